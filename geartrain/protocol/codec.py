"""Sans-I/O Gearman codec: bytes in, packets out; packets in, bytes out.

``Parser.feed(data)`` returns a list of events, each a ``(ptype, args)`` tuple:

* ``ptype`` 1..42: a binary packet; ``args`` are its fields as ``bytes`` (layout from packets.py).
* ``ptype == TEXT`` (0): an admin text line; ``args == (line,)`` without its line ending.
* ``ptype == PARSE_ERROR`` (-1): a well-framed packet that cannot be used (unknown type, wrong
  direction, missing NULs); ``args == (code, text)``. The stream goes on after it.
* ``ptype == FATAL`` (-2): the stream cannot be parsed any further (bad magic, a size over the
  limit, an endless text line); ``args == (code, text)``. The parser stops; close the connection.

Nothing here knows about sockets, event loops or clocks. Large payloads are gathered as a list of
chunks and joined once, so a 1 MiB packet arriving in 64 KiB reads costs one copy, not sixteen.
"""

from __future__ import annotations

import struct

from .packets import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER_SIZE,
    MAX_TYPE,
    NFIELDS,
    OPTIONAL_TAIL,
    PACKETS,
    REQ,
    RES,
    Direction,
    ErrorCode,
    T,
)

TEXT = 0
PARSE_ERROR = -1
FATAL = -2

#: Longest admin text line accepted (gearmand has no limit; ours is explicit).
DEFAULT_MAX_LINE = 64 * 1024

_HEADER = struct.Struct(">4sII")
_unpack_header = _HEADER.unpack_from

#: a packet at least this big that arrives over several reads gets its last argument joined straight from them
BIG_PACKET = 64 * 1024
_pack_header = _HEADER.pack

Event = tuple[int, tuple[bytes, ...]]


def _allowed(magic: bytes) -> tuple[bool, ...]:
    """Which packet types may arrive on a stream whose packets carry MAGIC."""
    want = Direction.REQ if magic == REQ else Direction.RES
    return tuple(bool(p is not None and p.direction & want) for p in PACKETS)


_ALLOWED = {REQ: _allowed(REQ), RES: _allowed(RES)}

#: per packet type, on a stream of that magic: its number of arguments, or -1 if it may not arrive there
_FIELDS = {m: tuple(NFIELDS[t] if ok and t else -1 for t, ok in enumerate(a)) for m, a in _ALLOWED.items()}

#: per packet type: the values of the trailing fields a peer may leave out (packets.OPTIONAL_TAIL), or None
_TAILS = tuple(OPTIONAL_TAIL.get(t) for t in range(MAX_TYPE + 1))

#: packets smaller than this are split with one slice and bytes.split; bigger ones in place (one copy)
SPLIT_MAX = 4096


class Parser:
    """Incremental parser for one direction of one connection.

    A server parses REQ packets and admin text lines (``expect=REQ, text=True``); a client or
    worker parses RES packets (``expect=RES``).
    """

    __slots__ = ("expect", "text", "max_packet_size", "max_line", "_allowed", "_fields", "_chunks", "buffered",
                 "_need", "broken")

    def __init__(
        self,
        expect: bytes = REQ,
        *,
        text: bool | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self.expect = expect
        self.text = (expect == REQ) if text is None else text
        self.max_packet_size = max_packet_size
        self.max_line = max_line
        self._allowed = _ALLOWED[expect]
        self._fields = _FIELDS[expect]
        self._chunks: list[bytes] = []
        #: bytes received but not yet part of a whole packet (read by the connection after every feed)
        self.buffered = 0
        self._need = 0
        self.broken = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Take bytes from the wire; return every whole packet or line they complete."""
        if self.broken or not data:
            return []
        if self._chunks:
            self._chunks.append(bytes(data))
            self.buffered += len(data)
            if self.buffered < self._need:
                return []
            if self._need >= BIG_PACKET:
                big = self._take_big()
                if big is not None:
                    events, data = big
                    if data:
                        events.extend(self.feed(data))
                    return events
            data = b"".join(self._chunks)
            self._chunks = []
        elif not isinstance(data, bytes):
            data = bytes(data)
        events: list[Event] = []
        pos = self._parse(data, events)
        rest = len(data) - pos
        if rest and not self.broken:
            self._chunks = [data[pos:] if pos else data]
            self.buffered = rest
        else:
            self.buffered = 0
        return events

    def _take_big(self) -> tuple[list[Event], bytes] | None:
        """The big packet the buffered chunks now complete, its last argument joined from the chunks with one
        copy (not a join of everything and then a slice); and the bytes after it. None: use the general path."""
        chunks = self._chunks
        first = chunks[0]
        if len(first) < HEADER_SIZE:
            return None
        magic, ptype, size = _unpack_header(first, 0)
        need = HEADER_SIZE + size
        if magic != self.expect or need != self._need or not 0 < ptype <= MAX_TYPE or not self._allowed[ptype]:
            return None
        n = NFIELDS[ptype]
        if n == 0:
            return None
        args: list[bytes] = []
        i = HEADER_SIZE
        for _ in range(n - 1):  # the leading arguments (handle, function...) must lie in the first chunk
            z = first.find(b"\0", i, need)
            if z < 0:
                return None
            args.append(first[i:z])
            i = z + 1
        rest = self.buffered - need
        last = chunks[-1]
        cut = len(last) - rest
        if len(chunks) < 2 or cut <= 0:
            return None
        args.append(b"".join([memoryview(first)[i:], *chunks[1:-1], memoryview(last)[:cut]]))
        self._chunks = []
        self.buffered = 0
        return [(ptype, tuple(args))], last[cut:]

    def _parse(self, data: bytes, events: list[Event]) -> int:
        """Parse whole packets from DATA into EVENTS; return where the unparsed rest starts."""
        end = len(data)
        pos = 0
        append = events.append
        fields = self._fields
        expect = self.expect
        limit = self.max_packet_size
        while pos < end:
            if data[pos] != 0:
                if not self.text:
                    return self._fatal(events, ErrorCode.INVALID_MAGIC, b"Bad packet magic")
                nl = data.find(b"\n", pos, pos + self.max_line + 1)
                if nl < 0:
                    if end - pos > self.max_line:
                        return self._fatal(events, ErrorCode.ARGUMENT_TOO_LARGE, b"Admin line too long")
                    self._need = end - pos + 1
                    return pos
                line = data[pos:nl]
                if line.endswith(b"\r"):
                    line = line[:-1]
                append((TEXT, (line,)))
                pos = nl + 1
                continue
            if end - pos < HEADER_SIZE:
                self._need = HEADER_SIZE
                return pos
            magic, ptype, size = _unpack_header(data, pos)
            start = pos + HEADER_SIZE
            stop = start + size
            if magic != expect or size > limit or stop > end or ptype > MAX_TYPE:
                # the rare cases, checked in the order that decides which one is reported
                if magic != expect and magic not in (REQ, RES):
                    return self._fatal(events, ErrorCode.INVALID_MAGIC, b"Bad packet magic")
                if size > limit:
                    return self._fatal(events, ErrorCode.ARGUMENT_TOO_LARGE, b"Packet larger than the server accepts")
                if stop > end:
                    self._need = HEADER_SIZE + size
                    return pos
                pos = stop
                if magic != expect:
                    text = b"Request magic expected" if expect == REQ else b"Response magic expected"
                    append((PARSE_ERROR, (ErrorCode.INVALID_MAGIC, text)))
                else:
                    append((PARSE_ERROR, (ErrorCode.INVALID_COMMAND, b"Command not expected")))
                continue
            pos = stop
            n = fields[ptype]
            if n == 1:
                append((ptype, (data[start:stop],)))
            elif n == 0:
                append((ptype, ()))
            elif n < 0:  # type 0, or a packet this side must not receive
                append((PARSE_ERROR, (ErrorCode.INVALID_COMMAND, b"Command not expected")))
            elif size < SPLIT_MAX:
                # small packet: one slice, split at the first n-1 NULs (the last argument may hold NULs)
                args = data[start:stop].split(b"\0", n - 1)
                append((ptype, tuple(args)) if len(args) == n else _short(ptype, args))
            else:
                # big packet: find the separators in place so the payload is copied once
                args = []
                i = start
                for _ in range(n - 1):
                    z = data.find(b"\0", i, stop)
                    if z < 0:
                        break
                    args.append(data[i:z])
                    i = z + 1
                else:
                    args.append(data[i:stop])
                    append((ptype, tuple(args)))
                    continue
                args.append(data[i:stop])
                append(_short(ptype, args))
        return pos

    def _fatal(self, events: list[Event], code: bytes, text: bytes) -> int:
        self.broken = True
        self._chunks = []
        events.append((FATAL, (code, text)))
        return 0


def _short(ptype: int, args: list[bytes]) -> Event:
    """The event for a packet that split into fewer than its fields: the packet with its missing trailing
    fields filled in, where the table lets a peer leave them out (OPTIONAL_TAIL), else a PARSE_ERROR."""
    tail = _TAILS[ptype]
    short = NFIELDS[ptype] - len(args)
    if tail is not None and short <= len(tail):
        return ptype, (*args, *tail[len(tail) - short:])
    return PARSE_ERROR, (ErrorCode.INVALID_PACKET, b"Packet has too few arguments")


def _prefixes(magic: bytes) -> tuple[bytes, ...]:
    return tuple(magic + i.to_bytes(4, "big") for i in range(MAX_TYPE + 1))


_REQ_PREFIX = _prefixes(REQ)
_RES_PREFIX = _prefixes(RES)


def pack_res(ptype: int, *args: bytes) -> bytes:
    """Encode a packet the server sends (magic ``\\0RES``)."""
    if len(args) == 1:
        payload = args[0]
    elif not args or len(args[-1]) < 4096:
        payload = b"\0".join(args)
    else:  # a big payload last: one join, so its bytes are copied once, not twice
        size = sum(map(len, args)) + len(args) - 1
        return b"\0".join((_RES_PREFIX[ptype] + size.to_bytes(4, "big") + args[0], *args[1:]))
    return _RES_PREFIX[ptype] + len(payload).to_bytes(4, "big") + payload


def pack_req(ptype: int, *args: bytes) -> bytes:
    """Encode a packet a client or worker sends (magic ``\\0REQ``)."""
    payload = b"\0".join(args) if len(args) != 1 else args[0]
    return _REQ_PREFIX[ptype] + len(payload).to_bytes(4, "big") + payload


def pack(magic: bytes, ptype: int, *args: bytes) -> bytes:
    """Encode a packet with the given magic."""
    return pack_req(ptype, *args) if magic == REQ else pack_res(ptype, *args)


def error_packet(code: bytes, text: bytes) -> bytes:
    """An ERROR packet, as the server sends it."""
    return pack_res(T.ERROR, code, text)


__all__ = [
    "Event",
    "FATAL",
    "PARSE_ERROR",
    "Parser",
    "TEXT",
    "error_packet",
    "pack",
    "pack_req",
    "pack_res",
]
