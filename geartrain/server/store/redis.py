"""Background jobs in Redis, in gearmand's hiredis layout (redis.asyncio).

One hash per job, as gearmand writes it: key ``<prefix>-<function>-<unique>`` (default prefix
``_gear_``), fields ``data`` (the workload) and ``priority`` (decimal 0/1/2). gearmand 1.1.20 reads
exactly those two fields (its replay asserts there are no others); newer gearmand also writes
``function`` and ``unique`` fields, which we read when present.

What that layout cannot carry goes in ONE side hash, ``geartrain-extra:<prefix>``, field = the job
key, value = the record from common.py: the run-at time (gearmand's Redis queue has none), reducer,
schedule, and the exact function and unique when the key cannot be parsed back unambiguously (a
function containing ``-``, or an empty unique, filed under a generated key). Its name does not start
with the prefix, so gearmand's ``SCAN MATCH <prefix>*`` never sees it (unless the prefix is the start of
``geartrain-``), and it holds one ``-`` only, so geartrain's replay, which needs two, never takes it
for a job.

A job's retry record (its tries, what each said, the run-at time of its next try: see common.py) goes
in a second side hash ``geartrain-retry:<prefix>`` the same way. Kept results, the failed-job registry
and the policies are three more hashes, none of whose names starts with the prefix either:
``geartrain-results:<prefix>`` (field: the job handle), ``geartrain-failed:<prefix>`` (field: the id
in decimal) and ``geartrain-policies:<prefix>`` (field: the function, value: the policy's text); a
result or failed job is one pack_extra record (see _KEPT_FIELDS, _FAILED_FIELDS).

A batch of adds is one EVALSHA of a Lua script, atomic like MULTI/EXEC (HSET per job, HDEL of a
replaced job's old side records, HSET of the new side records), encoded here in one go; a batch of
dones another script (DEL of the keys, HDEL of their side records), which Redis runs even at
maxmemory, where it refuses adds; any other settlement a third script, which checks first that its
hashes are hashes and writes before it deletes: a script is not rolled back when one of its commands
fails, but Redis refuses a write for memory only as the script's first write, so at maxmemory such a
settlement writes nothing (its deletes then go alone, as the done script does). Durability is Redis's: a job is
in Redis's memory when add() returns, which survives a crash of geartrain; surviving a restart of
Redis itself needs Redis persistence (``appendonly yes``; ``appendfsync always`` for every write).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .base import Extras, FailedJob, KeptResult, Settlement, StoredJob
from .common import (
    ConnectedStore,
    Names,
    generated_key,
    job_retry,
    needs_generated_key,
    pack_extra,
    retry_row,
    unpack_extra,
)

DEFAULT_PREFIX = "_gear_"
_SCAN_COUNT = 1000
_PRIORITY_ARG = {p: b"$1\r\n%d\r\n" % p for p in (0, 1, 2)}  # a priority as a RESP argument
#: workloads up to this size are formatted into their job's arguments; bigger ones are appended as they are
_INLINE_MAX = 4096
#: KEYS = the extra and retry side hashes. ARGV = n, m, then n x (key, data, priority), then m x (key,
#: extra record) for KEYS[1], then (key, retry record) pairs for KEYS[2]
_ADD_SCRIPT = b"""
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local i = 3
local sides = redis.call('EXISTS', KEYS[1]) == 1
local retries = redis.call('EXISTS', KEYS[2]) == 1
for _ = 1, n do
  redis.call('HSET', ARGV[i], 'data', ARGV[i + 1], 'priority', ARGV[i + 2])
  if sides then
    redis.call('HDEL', KEYS[1], ARGV[i])  -- a replaced job does not keep an old side record
  end
  if retries then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
  i = i + 3
end
for _ = 1, m do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return n
"""

#: what SCRIPT LOAD of _ADD_SCRIPT answers (Redis names a script by the SHA1 of its text)
_ADD_SHA = hashlib.sha1(_ADD_SCRIPT, usedforsecurity=False).hexdigest().encode()

#: ARGV = job keys: DEL of each and HDEL of its side records in KEYS[1] and KEYS[2] (where those hashes
#: exist: a hash that does not still costs the conversion of every argument), atomically. A script, not
#: MULTI/EXEC: at maxmemory Redis refuses every command queued in a MULTI, but lets a script run
#: commands that free memory, so finished jobs are still deleted when Redis is full.
_DONE_SCRIPT = b"""
local sides = redis.call('EXISTS', KEYS[1]) == 1
local retries = redis.call('EXISTS', KEYS[2]) == 1
for i = 1, #ARGV, 1000 do
  local j = math.min(i + 999, #ARGV)
  redis.call('DEL', unpack(ARGV, i, j))
  if sides then
    redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
  end
  if retries then
    redis.call('HDEL', KEYS[2], unpack(ARGV, i, j))
  end
end
return #ARGV
"""
_DONE_SHA = hashlib.sha1(_DONE_SCRIPT, usedforsecurity=False).hexdigest().encode()

#: KEYS = the extra, retry, results, failed and policies hashes. ARGV = eight counts, then: done job keys;
#: (job key, retry record) pairs; (handle, result record) pairs; handles to delete; (id, failed job record)
#: pairs; ids to delete; (function, policy) pairs; functions whose policy goes. Writes first, deletes after.
_SETTLE_SCRIPT = b"""
for k = 1, 5 do
  local kind = redis.call('TYPE', KEYS[k])['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' is a ' .. kind .. ', not a hash: nothing written')
  end
end
local n = {}
for k = 1, 8 do
  n[k] = tonumber(ARGV[k])
end
local at = {9}
for k = 1, 7 do
  local width = (k == 2 or k == 3 or k == 5 or k == 7) and 2 or 1
  at[k + 1] = at[k] + width * n[k]
end
local function pairs_into(key, first, count, only_existing)
  for i = first, first + 2 * count - 1, 2 do
    if not only_existing or redis.call('EXISTS', ARGV[i]) == 1 then
      redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    end
  end
end
local function delete(key, first, count)
  for i = first, first + count - 1, 1000 do
    local j = math.min(i + 999, first + count - 1)
    if key then
      redis.call('HDEL', key, unpack(ARGV, i, j))
    else
      redis.call('DEL', unpack(ARGV, i, j))
      redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
      redis.call('HDEL', KEYS[2], unpack(ARGV, i, j))
    end
  end
end
pairs_into(KEYS[2], at[2], n[2], true)  -- a retry of a job that is gone changes nothing
pairs_into(KEYS[3], at[3], n[3], false)
pairs_into(KEYS[4], at[5], n[5], false)
pairs_into(KEYS[5], at[7], n[7], false)
delete(false, at[1], n[1])
delete(KEYS[3], at[4], n[4])
delete(KEYS[4], at[6], n[6])
delete(KEYS[5], at[8], n[8])
return 1
"""
_SETTLE_SHA = hashlib.sha1(_SETTLE_SCRIPT, usedforsecurity=False).hexdigest().encode()

#: a kept result's fields in its record (the handle is the hash field)
_KEPT_FIELDS = {"function": "f", "unique": "u", "outcome": "o", "data": "d", "ended": "e", "expires": "x",
                "tries": "t"}
#: a failed job's fields in its record (the id is the hash field)
_FAILED_FIELDS = {"handle": "j", "function": "f", "unique": "u", "data": "d", "size": "n", "priority": "p",
                  "background": "b", "failed_at": "a", "history": "h"}


def _record(obj: Any, fields: dict[str, str]) -> bytes:
    """OBJ's FIELDS as one pack_extra record (numbers in decimal, floats as repr)."""
    values = {}
    for name, tag in fields.items():
        value = getattr(obj, name)
        if isinstance(value, bool):
            value = b"1" if value else b"0"
        elif isinstance(value, int | float):
            value = repr(value).encode()
        elif isinstance(value, str):
            value = value.encode()
        values[tag] = value
    return pack_extra(**values) or b""


def _kept(handle: bytes, record: bytes) -> KeptResult:
    f = unpack_extra(record)
    return KeptResult(handle=handle, function=f.get("f", b""), unique=f.get("u", b""),
                      outcome=f.get("o", b"").decode(), data=f.get("d", b""), ended=float(f.get("e", b"0")),
                      expires=float(f.get("x", b"0")), tries=int(f.get("t", b"1")))


def _failed(id_: bytes, record: bytes) -> FailedJob:
    f = unpack_extra(record)
    return FailedJob(id=int(id_), handle=f.get("j", b""), function=f.get("f", b""), unique=f.get("u", b""),
                     data=f.get("d", b""), size=int(f.get("n", b"0")), priority=int(f.get("p", b"1")),
                     background=f.get("b", b"1") == b"1", failed_at=float(f.get("a", b"0")),
                     history=f.get("h", b""))

#: ARGV = SCAN cursor, MATCH pattern, COUNT. Returns ONE string of length-prefixed fields (4-byte
#: big-endian length, 0xFFFFFFFF for none): the next cursor, then for each key eight: the key, its
#: type, data, priority, function, unique (the last two are written by gearmand >= 1.1.22 only),
#: its side record (KEYS[1]) and its retry record (KEYS[2]). A plain string value (gearmand <= 1.1.15
#: kept the workload so) comes back as type "string". One string parses far faster in Python than
#: thousands of RESP elements.
_FETCH_SCRIPT = b"""
local parts = {}
local NONE = '\\255\\255\\255\\255'
local function put(v)
  if v then
    parts[#parts + 1] = struct.pack('>I4', #v)
    parts[#parts + 1] = v
  else
    parts[#parts + 1] = NONE
  end
end
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys = page[2]
put(page[1])
if #keys == 0 then
  return table.concat(parts)
end
local extras = redis.call('HMGET', KEYS[1], unpack(keys))
local retries = redis.call('HMGET', KEYS[2], unpack(keys))
for i, key in ipairs(keys) do
  local kind = redis.call('TYPE', key)['ok']
  put(key)
  put(kind)
  if kind == 'hash' then
    local f = redis.call('HMGET', key, 'data', 'priority', 'function', 'unique')
    put(f[1]) put(f[2]) put(f[3]) put(f[4])
  elseif kind == 'string' then
    put(redis.call('GET', key)) put('1') put(false) put(false)
  else
    put(false) put(false) put(false) put(false)
  end
  put(extras[i])
  put(retries[i])
end
return table.concat(parts)
"""
_LENGTH = struct.Struct(">I")
_NONE = 0xFFFFFFFF


def _fields(blob: bytes) -> list[bytes | None]:
    """Decode _FETCH_SCRIPT's length-prefixed fields."""
    out: list[bytes | None] = []
    pos, end, unpack = 0, len(blob), _LENGTH.unpack_from
    while pos < end:
        (n,) = unpack(blob, pos)
        pos += 4
        if n == _NONE:
            out.append(None)
        else:
            out.append(blob[pos:pos + n])
            pos += n
    return out


def _sha(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _resp(args: list[bytes], *head: bytes) -> bytes:
    """HEAD + ARGS as one RESP command."""
    parts = [b"*%d\r\n" % (len(head) + len(args))]
    for arg in head:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


class RedisStore(ConnectedStore):
    """Background jobs as Redis hashes."""

    name = "redis"

    def __init__(self, connect: dict[str, Any], prefix: str | bytes = DEFAULT_PREFIX) -> None:
        super().__init__()
        self.connect_args = dict(connect)
        self.prefix = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
        self.extra_key = b"geartrain-extra:" + self.prefix
        self.retry_key = b"geartrain-retry:" + self.prefix
        self.results_key = b"geartrain-results:" + self.prefix
        self.failed_key = b"geartrain-failed:" + self.prefix
        self.policies_key = b"geartrain-policies:" + self.prefix
        #: the keys of every settle script, as its head
        self._settle_keys = (b"EVALSHA", _SETTLE_SHA, b"5", self.extra_key, self.retry_key, self.results_key,
                             self.failed_key, self.policies_key)

    def _describe(self) -> str:
        a = self.connect_args
        where = a.get("unix_socket_path") or f"{a.get('host', '127.0.0.1')}:{a.get('port', 6379)}"
        return f"{where}/{a.get('db', 0)} prefix {self.prefix.decode(errors='replace')}"

    def job_key(self, function: bytes, unique: bytes) -> bytes:
        return b"%s-%s-%s" % (self.prefix, function, unique)

    async def _connect(self) -> aioredis.Redis:
        args = {"socket_connect_timeout": self.connect_timeout, "socket_timeout": self.op_timeout,
                "retry": Retry(NoBackoff(), 0), "single_connection_client": True,
                **self.connect_args, "decode_responses": False}
        client = aioredis.Redis(**args)
        try:
            await client.ping()
            await client.script_load(_ADD_SCRIPT)  # its SHA1 is _ADD_SHA
            await client.script_load(_DONE_SCRIPT)  # _DONE_SHA
            await client.script_load(_SETTLE_SCRIPT)  # _SETTLE_SHA
            self._fetch_sha = _sha(await client.script_load(_FETCH_SCRIPT))
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _close_conn(self, conn: aioredis.Redis) -> None:
        await conn.aclose()

    def _is_full(self, exc: BaseException) -> bool:
        # "OOM command not allowed when used memory > 'maxmemory'", also from inside our script
        return isinstance(exc, rexc.OutOfMemoryError)

    def _is_connection_error(self, exc: BaseException, conn: Any) -> bool:
        if isinstance(exc, rexc.NoScriptError):  # SCRIPT FLUSH: reconnecting loads it again
            return True
        return isinstance(exc, OSError | ConnectionError | rexc.ConnectionError | rexc.TimeoutError)

    # -- the interface ---------------------------------------------------------------------

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        if not jobs:
            return
        # One EVALSHA of _ADD_SCRIPT (atomic, like MULTI/EXEC) with every job's key, data and
        # priority: the fastest way to hand Redis a batch from Python. The command is encoded here
        # in one go, one formatting per job (a job's three arguments together).
        parts = [b""]  # the command's head, once the argument count is known
        put = parts.append
        heads: dict[bytes, tuple[bytes, bool]] = {}  # function -> its keys' head, whether it holds a '-'
        extras: list[bytes] = []
        retries: list[bytes] = []
        for job in jobs:
            function = job.function
            known = heads.get(function)
            if known is None:
                known = heads[function] = (self.job_key(function, b""), b"-" in function)
            head, dash = known
            unique = job.store_key or job.unique
            if needs_generated_key(unique):
                unique = job.store_key = generated_key()
            data = job.data
            if len(data) < _INLINE_MAX:
                put(b"$%d\r\n%s%s\r\n$%d\r\n%s\r\n%s" % (len(head) + len(unique), head, unique, len(data), data,
                                                       _PRIORITY_ARG[job.priority]))
            else:  # a big workload is not copied into the formatted string, only once into the command
                put(b"$%d\r\n%s%s\r\n$%d\r\n" % (len(head) + len(unique), head, unique, len(data)))
                put(data)
                put(b"\r\n" + _PRIORITY_ARG[job.priority])
            exact = dash or unique != job.unique
            if exact or job.when or job.reducer or job.schedule:
                extra = pack_extra(f=function if exact else None, u=job.unique if exact else None,
                                   w=b"%d" % job.when if job.when else None, r=job.reducer or None,
                                   s=job.schedule or None)
                extras += (head + unique, extra)  # type: ignore[arg-type]
            if job.tries or job.history:
                retries += (head + unique, job_retry(job))  # type: ignore[arg-type]
        for arg in extras:
            put(b"$%d\r\n%s\r\n" % (len(arg), arg))
        for arg in retries:
            put(b"$%d\r\n%s\r\n" % (len(arg), arg))
        count = b"%d" % len(jobs)
        sides = b"%d" % (len(extras) // 2)
        parts[0] = (b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                    b"$%d\r\n%s\r\n$%d\r\n%s\r\n") % (
            7 + 3 * len(jobs) + len(extras) + len(retries), len(_ADD_SHA), _ADD_SHA, len(self.extra_key),
            self.extra_key, len(self.retry_key), self.retry_key, len(count), count, len(sides), sides)
        command = b"".join(parts)

        async def op(conn: aioredis.Redis) -> None:
            connection = conn.connection
            await connection.send_packed_command(command, check_health=False)
            await connection.read_response()

        await self._call("add", op, writes=jobs)

    async def _ping(self, conn: aioredis.Redis) -> None:
        await conn.ping()

    def _deleter(self, keys: Sequence[tuple[bytes, bytes]]) -> Callable[[Any], Awaitable[Any]]:
        # The side record goes with the job whether or not it had one (HDEL of a missing field is
        # a no-op).
        return self._sender(_resp([self.job_key(function, unique) for unique, function in keys], b"EVALSHA",
                                  _DONE_SHA, b"2", self.extra_key, self.retry_key))

    def _settler(self, batch: Settlement) -> Callable[[Any], Awaitable[Any]]:
        key = self.job_key
        retried: list[bytes] = []
        for r in batch.retried:
            retried += (key(r.key[1], r.key[0]), retry_row(r)[1])
        kept: list[bytes] = []
        for result in batch.kept:
            kept += (result.handle, _record(result, _KEPT_FIELDS))
        buried: list[bytes] = []
        for failed in batch.buried:
            buried += (b"%d" % failed.id, _record(failed, _FAILED_FIELDS))
        policies: list[bytes] = []
        for function, text in batch.policies.items():
            if text:
                policies += (function, text.encode())
        dropped = [function for function, text in batch.policies.items() if not text]
        lists = ([key(f, u) for u, f in batch.done], retried, kept, list(batch.unkept), buried,
                 [b"%d" % i for i in batch.unburied], policies, dropped)
        counts = [b"%d" % (len(values) // (2 if i in (1, 2, 4, 6) else 1)) for i, values in enumerate(lists)]
        return self._sender(_resp([*counts, *(arg for values in lists for arg in values)], *self._settle_keys))

    @staticmethod
    def _sender(command: bytes) -> Callable[[Any], Awaitable[Any]]:
        """What sends COMMAND (RESP, encoded) on a connection and reads its reply."""
        async def op(conn: aioredis.Redis) -> None:
            connection = conn.connection
            await connection.send_packed_command(command, check_health=False)
            await connection.read_response()

        return op

    async def _read_extras(self, conn: aioredis.Redis, now: float) -> Extras:
        async with conn.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.results_key)
            pipe.hgetall(self.failed_key)
            pipe.hgetall(self.policies_key)
            results, failed, policies = await pipe.execute()
        kept, expired = [], []
        for handle, record in results.items():
            result = _kept(handle, record)
            (kept if result.expires > now else expired).append(result)
        if expired:
            await conn.hdel(self.results_key, *[r.handle for r in expired])
        return Extras(kept=kept, failed=sorted((_failed(i, r) for i, r in failed.items()), key=lambda f: f.id),
                      policies={f: text.decode() for f, text in policies.items()})

    async def replay_batches(self, size: int = 10_000) -> AsyncIterator[list[StoredJob]]:
        match = re.sub(rb"([*?\[\]\\])", rb"\\\1", self.prefix) + b"-*"
        count = b"%d" % min(_SCAN_COUNT, size)
        cursor = b"0"
        batch: list[StoredJob] = []
        names = Names()
        while True:
            cursor, jobs = await self._call("replay", lambda c, cur=cursor: self._page(c, cur, match, count, names))
            batch += jobs
            done = cursor == b"0"
            while len(batch) >= size or (done and batch):
                yield batch[:size]
                batch = batch[size:]
            if done:
                return

    async def _page(self, conn: aioredis.Redis, cursor: bytes, match: bytes, count: bytes,
                    names: Names) -> tuple[bytes, list]:
        """One SCAN page, every key's fields and side record with it, in one EVALSHA."""
        connection = conn.connection
        await connection.send_packed_command(
            _resp([cursor, match, count], b"EVALSHA", self._fetch_sha, b"2", self.extra_key, self.retry_key),
            check_health=False)
        flat = _fields(await connection.read_response())
        jobs = []
        for i in range(1, len(flat), 8):
            key, kind, data, priority, function, unique, extra, retry = flat[i:i + 8]
            if kind == b"none" or key is None:  # deleted since SCAN saw it
                continue
            fields = {b"data": data or b"", b"priority": priority or b"1"}
            if function is not None:
                fields[b"function"] = function
            if unique is not None:
                fields[b"unique"] = unique
            job = self._job(key, fields, unpack_extra(extra), unpack_extra(retry))
            if job is not None:
                job.function = names(job.function)
                jobs.append(job)
        return flat[0] or b"0", jobs

    def _job(self, key: bytes, fields: dict[bytes, bytes], extra: dict[str, bytes],
             retry: dict[str, bytes]) -> StoredJob | None:
        rest = key[len(self.prefix) + 1:]
        function, sep, stored_unique = rest.partition(b"-")  # as gearmand parses it: function up to the first '-'
        if not sep:
            return None
        function = extra.get("f") or fields.get(b"function") or function
        head = self.job_key(function, b"")
        if not key.startswith(head):
            return None  # cannot name this key again; leave it alone
        stored_unique = key[len(head):]
        unique = extra["u"] if "u" in extra else fields.get(b"unique", stored_unique)
        try:
            priority = int(fields.get(b"priority", b"1"))
        except ValueError:
            priority = 1
        return StoredJob(function=function, unique=unique, data=fields.get(b"data", b""),
                         priority=priority if priority in (0, 1, 2) else 1,
                         when=int(retry.get("w") or extra.get("w") or 0),
                         reducer=extra.get("r", b""), schedule=extra.get("s", b""),
                         store_key=stored_unique if stored_unique != unique else b"",
                         tries=int(retry.get("t", b"0")), history=retry.get("h", b""))
