"""Topic history in Redis: the keys, the Lua scripts and the payload form (no I/O here).

Each topic has a hash `<prefix>{<topic>}:meta` (fields `epoch` and `offset`) and a Redis
Stream `<prefix>{<topic>}:history` whose entry IDs are `<offset>-0`. `APPEND` runs as one
script, so that Redis does it atomically: it makes the epoch if the topic has none, takes
the next offset, adds the entry (trimmed to the history size), sets both keys to expire
`ttl` after the latest publication, and publishes the payload on the topic's channel. Two
processes can therefore never give one offset twice, and the channel carries the
publications in offset order. If Redis loses its data, the next append makes a new epoch.

`POSITION` reads a topic's position and whether the entry after a given offset is still
kept (by count and by age), so that a resume is whole or not at all.
"""

from __future__ import annotations

from ..history import Publication, StreamPosition
from ..protocol import Data

__all__ = [
    "APPEND",
    "POSITION",
    "HISTORY_MARK",
    "history_keys",
    "encode_publication",
    "decode_publication",
    "decode_entries",
    "position_of",
    "MalformedPublication",
]

#: The first byte of a payload with a position (a plain one starts with a hex digit).
HISTORY_MARK = b"h"

# The start of both scripts: the topic's epoch, made afresh (with its stream emptied) if it
# has none, or if another primary wrote it; ARGV[fresh] is a new epoch, ARGV[writer] ""
# or the id of the cluster primary running the script.
_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch or (ARGV[{writer}] ~= '' and redis.call('HGET', KEYS[1], 'writer') ~= ARGV[{writer}]) then
  epoch = ARGV[{fresh}]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0, 'writer', ARGV[{writer}])
end
"""

# KEYS: meta, history. ARGV: channel, kind ("t" or "b"), data, size, ttl in ms (0: none),
# a fresh epoch in case the topic has none, the writer ("" or the id of the cluster primary
# running this), and the publish command (PUBLISH, or SPUBLISH in a cluster). Returns
# {epoch, offset}. A stream another primary wrote (before a failover, which may have lost
# its latest entries) starts a new epoch: its positions cannot be vouched for.
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


class MalformedPublication(ValueError):
    """A payload or a history entry that is not in our form."""


def history_keys(prefix: str, topic: str) -> tuple[str, str]:
    """The meta hash and the history stream of `topic` (one hash slot: the `{topic}` tag)."""
    return f"{prefix}{{{topic}}}:meta", f"{prefix}{{{topic}}}:history"


def encode_publication(message: Data) -> tuple[bytes, bytes]:
    """The kind (b"t" for text, b"b" for bytes) and the bytes of `message`."""
    if isinstance(message, str):
        return b"t", message.encode()
    return b"b", bytes(message)


def _decoded(kind: bytes, data: bytes) -> Data:
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
    offset_text = payload[first + 1 : second]
    if not offset_text.isdigit() or len(offset_text) > 19:
        raise MalformedPublication("a payload whose offset is not a number")
    epoch = payload[2:first].decode("ascii", "replace")
    return Publication(topic, _decoded(payload[1:2], payload[second + 1 :]), int(offset_text), epoch)


def decode_entries(topic: str, epoch: str, entries: object) -> list[Publication]:
    """The publications in an XRANGE reply of `topic`'s history."""
    if not isinstance(entries, list):
        raise MalformedPublication("a history reply that is not a list")
    publications = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)):
            raise MalformedPublication("a history entry not in XRANGE's form")
        entry_id, fields = entry
        offset_text = entry_id.partition(b"-")[0]
        if not offset_text.isdigit() or not isinstance(fields, list):
            raise MalformedPublication("a history entry whose ID is not <offset>-0")
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        kind, data = values.get(b"k"), values.get(b"d")
        if not isinstance(kind, bytes) or not isinstance(data, bytes):
            raise MalformedPublication("a history entry without a kind and data")
        publications.append(Publication(topic, _decoded(kind, data), int(offset_text), epoch))
    return publications


def position_of(reply: object) -> tuple[StreamPosition, bool]:
    """The position in a `POSITION` reply and whether the entry asked about is kept."""
    if not (isinstance(reply, list) and len(reply) == 3 and isinstance(reply[0], bytes)):
        raise MalformedPublication("a POSITION reply not in its form")
    epoch, offset, kept = reply
    if not epoch or not isinstance(offset, int) or not isinstance(kept, int):
        raise MalformedPublication("a POSITION reply not in its form")
    return StreamPosition(offset, epoch.decode("ascii", "replace")), bool(kept)
