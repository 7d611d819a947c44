"""The admin text protocol: split a command line, and format replies byte for byte as gearmand 1.1.x does.

Monitoring tools (gearadmin, gearman_top, mod_gearman, the Perl and PHP admin libraries) parse
these replies, so the formats are exact: lists end with ``.\\n``, ``OK``/``ERR`` replies end with
``\\r\\n`` while ``getpid``/``verbose``/``version`` end with ``\\n``, and error texts use ``+`` for
spaces. Nothing here knows about the server's state: callers pass rows in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

OK = b"OK\r\n"
END = b".\n"
ERR_UNKNOWN_JOB = b"ERR UNKNOWN_JOB\r\n"
ERR_INTERNAL = b"ERR UNKNOWN_ERROR\r\n"
ERR_UNKNOWN_SHOW = b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
ERR_DROP_BUSY = b"ERR there are still connected workers or executing clients\r\n"
ERR_DROP_MISSING = b"ERR function not found\r\n"
ERR_PERMISSION = b"ERR PERMISSION_DENIED Permission+denied\r\n"


def fields(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A listing of NAME<tab>VALUE lines ending with ``.\n`` (geartrain's own commands: ``result``,
    ``failed show``); a value's tabs and line breaks are written as spaces."""
    parts = [name + b"\t" + _one_line(value) + b"\n" for name, value in pairs]
    parts.append(END)
    return b"".join(parts)


def rows(lines: Iterable[Iterable[bytes]]) -> bytes:
    """A listing of tab-separated rows ending with ``.\n`` (a field's tabs and line breaks written as spaces)."""
    parts = [b"\t".join(_one_line(v) for v in row) + b"\n" for row in lines]
    parts.append(END)
    return b"".join(parts)


def _one_line(value: bytes) -> bytes:
    return value.replace(b"\t", b" ").replace(b"\r", b" ").replace(b"\n", b" ")


def gearmand_hash(key: bytes) -> int:
    """gearmand's hash of function names, handles and uniques: Jenkins one-at-a-time on signed 32-bit
    integers (chars are signed), never 0. Listings walk its hash tables, so ordering rows by
    (hash % buckets, newest first) reproduces gearmand's exact output."""

    def s32(v: int) -> int:
        v &= 0xFFFFFFFF
        return v - 0x100000000 if v & 0x80000000 else v

    value = 0
    for byte in key:
        value = s32(value + (byte - 256 if byte > 127 else byte))
        value = s32(value + (value << 10))
        value = s32(value ^ (value >> 6))
    value = s32(value + (value << 3))
    value = s32(value ^ (value >> 11))
    value = s32(value + (value << 15))
    return (value & 0xFFFFFFFF) or 1


def gearmand_bucket(name: bytes, buckets: int = 991) -> int:
    """The bucket of gearmand's function table (991 buckets) NAME falls in."""
    return gearmand_hash(name) % buckets


def gearmand_order(items: list, key: Callable[[object], int], buckets: int = 991) -> list:
    """ITEMS (oldest first) in the order gearmand's hash table lists them: by bucket, newest first."""
    buckets_of = [key(item) % buckets for item in items]
    order = sorted(range(len(items)), key=lambda i: (buckets_of[i], -i))
    return [items[i] for i in order]


def split(line: bytes) -> list[bytes]:
    """The words of a command line (runs of spaces separate them; the line ending is already gone)."""
    return line.split()


def err_args(command: bytes) -> bytes:
    """A command was sent without enough arguments."""
    return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+" + command + b"\r\n"


def err_unknown(command: bytes) -> bytes:
    """An unknown command (note: no space between "command" and the name, as gearmand)."""
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + command + b"\r\n"


def err(code: bytes, text: str) -> bytes:
    """``ERR CODE text+with+plus+for+spaces\r\n``, gearmand's form of an error with a message."""
    return b"ERR " + code + b" " + "+".join(text.split()).encode("utf-8", "replace") + b"\r\n"


def err_create(name: bytes) -> bytes:
    return b"ERR CREATE_FUNCTION " + name + b"\r\n"


def ok_value(value: bytes | str | int) -> bytes:
    """``OK <value>\\n`` (getpid, verbose, version)."""
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        value = value.encode()
    return b"OK " + value + b"\n"


def status(rows: Iterable[tuple[bytes, int, int, int]]) -> bytes:
    """``status``: FUNCTION, TOTAL (queued + running), RUNNING, AVAILABLE_WORKERS, tab-separated."""
    parts = [b"%s\t%d\t%d\t%d\n" % row for row in rows]
    parts.append(END)
    return b"".join(parts)


def priority_status(rows: Iterable[tuple[bytes, int, int, int, int]]) -> bytes:
    """``prioritystatus``: FUNCTION, HIGH, NORMAL, LOW (queued), WORKERS."""
    parts = [b"%s\t%d\t%d\t%d\t%d\n" % row for row in rows]
    parts.append(END)
    return b"".join(parts)


def workers(rows: Iterable[tuple[int, bytes, bytes, Iterable[bytes]]]) -> bytes:
    """``workers``: one line per connection, ``FD IP CLIENT_ID : FUNC FUNC ...``."""
    parts = []
    for fd, host, client_id, functions in rows:
        line = b"%d %s %s :" % (fd, host, client_id)
        for name in functions:
            line += b" " + name
        parts.append(line + b"\n")
    parts.append(END)
    return b"".join(parts)


def show_jobs(rows: Iterable[tuple[bytes, int, int, int]]) -> bytes:
    """``show jobs``: HANDLE, RETRIES, IGNORE_JOB, JOB_QUEUED."""
    parts = [b"%s\t%d\t%d\t%d\n" % row for row in rows]
    parts.append(END)
    return b"".join(parts)


def show_unique_jobs(uniques: Iterable[bytes]) -> bytes:
    """``show unique jobs``: one unique per line (an empty line for a job without one)."""
    parts = [u + b"\n" for u in uniques]
    parts.append(END)
    return b"".join(parts)
