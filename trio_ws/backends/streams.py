"""Topic history in Redis: the keys, the Lua scripts and the payload form (no I/O here).

Each topic has a hash `<prefix>{<topic>}:meta` (fields `epoch` and `offset`) and a Redis
Stream `<prefix>{<topic>}:history` whose entry IDs are `<offset>-0`. `APPEND` runs as one
script, so that Redis does it atomically: it makes the epoch if the topic has none, takes
the next offset, adds the entry (trimmed to the history size), sets both keys to expire
`ttl` after the latest publication, and publishes the payload on the topic's channel. Two
processes can therefore never give one offset twice, and the channel carries the
publications in offset order.

An epoch is vouched for by the Redis process that made it: the meta hash names it (its
`run_id`, which changes on every start). When another process finds it (Redis restarted,
perhaps from an older snapshot, or a replica took over), the topic starts a new epoch and
its stream is emptied: Redis cannot tell which writes it lost, so no position from before
is recovered, rather than a later one being given twice.

`POSITION` reads a topic's position and whether the entry after a given offset is still
kept (by count and by age), so that a resume is whole or not at all. `READ` reads the
entries after an offset, a bounded batch at a time: a replay's cursor.
"""

from __future__ import annotations

from ..history import MAX_EPOCH_LENGTH, MAX_OFFSET, Publication, StreamPosition
from ..messages import Data
from .sharding import tagged

__all__ = [
    "APPEND",
    "POSITION",
    "READ",
    "read_reply",
    "HISTORY_MARK",
    "history_keys",
    "encode_publication",
    "decode_publication",
    "decode_entries",
    "position_of",
    "MalformedPublication",
]

HISTORY_MARK = b"h"
"""The first byte of a payload with a position (a plain one starts with a hex digit)."""

# The start of the scripts: the topic's epoch, made afresh (with its stream emptied) if it
# has none, or if another Redis process wrote it; ARGV[fresh] is a new epoch, ARGV[writer]
# the run_id of the Redis process running the script (as the client read it on connecting).
_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch or redis.call('HGET', KEYS[1], 'writer') ~= ARGV[{writer}] then
  epoch = ARGV[{fresh}]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0, 'writer', ARGV[{writer}])
end
"""

# KEYS: meta, history. ARGV: channel, kind ("t" or "b"), data, size, ttl in ms (0: none),
# a fresh epoch in case the topic has none, the writer (the run_id of this Redis), and the
# publish command (PUBLISH, or SPUBLISH in a cluster). Returns {epoch, offset}.
APPEND = (
    _EPOCH.format(fresh=6, writer=7)
    + """
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local now = redis.call('TIME')
local ms = tostring(now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'k', ARGV[2], 'd', ARGV[3], 't', ms)
if ARGV[5] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call(ARGV[8], ARGV[1], 'h' .. ARGV[2] .. epoch .. ':' .. offset .. ':' .. ARGV[3])
return {epoch, offset}
"""
)

# KEYS: meta, history. ARGV: an offset, ttl in ms (0: none), a fresh epoch in case the topic
# has none (or another primary wrote it, as in APPEND), the writer. Returns {epoch, offset,
# kept}: the topic's position and 1 if the entry after the given offset is kept and
# younger than ttl (or the offset is the latest), else 0. A topic
# without an epoch gets one here, so that a position is never without one: a subscriber
# that starts before the first publication can resume from offset 0 of that epoch.
POSITION = (
    _EPOCH.format(fresh=3, writer=4)
    + """
if ARGV[2] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
local after = tonumber(ARGV[1])
if after >= last then
  return {epoch, last, 1}
end
local entry = redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', (after + 1) .. '-0')
if #entry == 0 then
  return {epoch, last, 0}
end
if ARGV[2] ~= '0' then
  local fields = entry[1][2]
  local now = redis.call('TIME')
  local ms = now[1] * 1000 + math.floor(now[2] / 1000)
  for i = 1, #fields, 2 do
    if fields[i] == 't' and tonumber(fields[i + 1]) <= ms - tonumber(ARGV[2]) then
      return {epoch, last, 0}
    end
  end
end
return {epoch, last, 1}
"""
)


# KEYS: meta, history. ARGV: an offset, a count, a byte bound, ttl in ms (0: none), a fresh
# epoch, the writer. Returns {epoch, offset, kept, entries}: the topic's position; 1 if the
# entry after the given offset is kept and younger than ttl (or the offset is the latest),
# else 0; and the entries after the offset, at most the count and the bytes of data (but at
# least one), oldest first.
READ = (
    _EPOCH.format(fresh=5, writer=6)
    + """
local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
local after = tonumber(ARGV[1])
if after >= last then
  return {epoch, last, after == last and 1 or 0, {}}
end
local first = (after + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], first, '+', 'COUNT', tonumber(ARGV[2]))
if #entries == 0 or entries[1][1] ~= first then
  return {epoch, last, 0, {}}
end
local ms
if ARGV[4] ~= '0' then
  local now = redis.call('TIME')
  ms = now[1] * 1000 + math.floor(now[2] / 1000)
end
local out, total, max = {}, 0, tonumber(ARGV[3])
for i = 1, #entries do
  local fields = entries[i][2]
  local size = 0
  for j = 1, #fields, 2 do
    if fields[j] == 'd' then
      size = #fields[j + 1]
    elseif i == 1 and ms and fields[j] == 't' and tonumber(fields[j + 1]) <= ms - tonumber(ARGV[4]) then
      return {epoch, last, 0, {}}
    end
  end
  if i > 1 and total + size > max then
    break
  end
  total = total + size
  out[i] = entries[i]
end
return {epoch, last, 1, out}
"""
)


class MalformedPublication(ValueError):
    """A payload or a history entry that is not in our form."""


def history_keys(prefix: str, topic: str) -> tuple[str, str]:
    """The meta hash and the history stream of `topic` (one hash slot: the `{topic}` tag)."""
    start = tagged(prefix, topic)
    return f"{start}:meta", f"{start}:history"


def encode_publication(message: Data) -> tuple[bytes, bytes]:
    """The kind (b"t" for text, b"b" for bytes) and the bytes of `message`."""
    if isinstance(message, str):
        return b"t", message.encode()
    return b"b", bytes(message)


def _decoded(kind: bytes, data: bytes) -> str | bytes:
    if kind == b"b":
        return data
    if kind == b"t":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPublication("a text message that is not valid UTF-8") from None
    raise MalformedPublication(f"an unknown kind {kind!r}")


def decode_publication(topic: str, payload: bytes) -> Publication:
    """The publication in a payload `APPEND` published: mark, kind, epoch:offset:, data."""
    first = payload.find(b":", 2)
    second = payload.find(b":", first + 1) if first > 0 else -1
    if not payload.startswith(HISTORY_MARK) or second < 0:
        raise MalformedPublication("a payload without a kind, an epoch and an offset")
    epoch = payload[2:first].decode("ascii", "replace")
    if len(epoch) > MAX_EPOCH_LENGTH:
        raise MalformedPublication("a payload whose epoch is too long")
    offset = _offset(payload[first + 1 : second])
    return Publication(topic, _decoded(payload[1:2], payload[second + 1 :]), offset, epoch)


def _offset(text: bytes) -> int:
    """An offset written in decimal, or MalformedPublication."""
    if not text.isdigit() or len(text) > 19 or int(text) > MAX_OFFSET:
        raise MalformedPublication(f"an offset that is not a number from 0 to {MAX_OFFSET}")
    return int(text)


def decode_entries(topic: str, epoch: str, entries: object) -> list[Publication]:
    """The publications in an XRANGE reply of `topic`'s history."""
    if not isinstance(entries, list):
        raise MalformedPublication("a history reply that is not a list")
    publications = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)):
            raise MalformedPublication("a history entry not in XRANGE's form")
        entry_id, fields = entry
        offset = _offset(entry_id.partition(b"-")[0])
        if not (isinstance(fields, list) and len(fields) % 2 == 0 and all(type(f) is bytes for f in fields)):
            raise MalformedPublication("a history entry whose fields are not pairs of strings")
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        kind, data = values.get(b"k"), values.get(b"d")
        if kind is None or data is None:
            raise MalformedPublication("a history entry without a kind and data")
        publications.append(Publication(topic, _decoded(kind, data), offset, epoch))
    return publications


def read_reply(reply: object) -> tuple[StreamPosition, bool, object]:
    """The position, whether the entry asked about is kept, and the entries, of a `READ` reply."""
    if not (isinstance(reply, list) and len(reply) == 4):
        raise MalformedPublication("a READ reply not in its form")
    position, kept = position_of(reply[:3])
    return position, kept, reply[3]


def position_of(reply: object) -> tuple[StreamPosition, bool]:
    """The position in a `POSITION` reply and whether the entry asked about is kept."""
    if not (isinstance(reply, list) and len(reply) == 3 and isinstance(reply[0], bytes)):
        raise MalformedPublication("a POSITION reply not in its form")
    epoch, offset, kept = reply
    if not epoch or not isinstance(offset, int) or not isinstance(kept, int):
        raise MalformedPublication("a POSITION reply not in its form")
    try:
        return StreamPosition(offset, epoch.decode("ascii", "replace")), bool(kept)
    except ValueError as exc:  # a negative offset, an epoch too long: not ours
        raise MalformedPublication(f"a position not in its form: {exc}") from None
