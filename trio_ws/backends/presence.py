"""Presence in Redis: who is subscribed to a topic, across processes (no I/O here).

A topic's members are a hash `<prefix>{<topic>}:presence` (member id to its info, as JSON)
and a sorted set `<prefix>{<topic>}:presence:expiry` (member id to the time, in ms, its
entry expires). A process refreshes its own members every third of the TTL (`JOIN` again),
so the entries of a process that died without leaving expire within the TTL: `MEMBERS`
drops those before it answers. Both keys expire a TTL after the last refresh of anyone.
"""

from __future__ import annotations

from .sharding import tagged

__all__ = ["JOIN", "LEAVE", "MEMBERS", "presence_keys", "members_of"]

# KEYS: members, expiry. ARGV: member id, info (JSON), ttl in ms.
JOIN = """
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: members, expiry. ARGV: member id.
LEAVE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: members, expiry. Returns HGETALL of the members once the expired are dropped.
MEMBERS = """
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms)
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[1], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms)
return redis.call('HGETALL', KEYS[1])
"""


def presence_keys(prefix: str, topic: str) -> tuple[str, str]:
    """The members hash and the expiry set of `topic` (one hash slot: the `{topic}` tag)."""
    start = tagged(prefix, topic)
    return f"{start}:presence", f"{start}:presence:expiry"


def members_of(reply: object) -> dict[str, str]:
    """Member ids to their info (JSON text) from a `MEMBERS` reply; ValueError if malformed."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise ValueError("a MEMBERS reply that is not a flat list of pairs")
    members = {}
    for member, info in zip(reply[::2], reply[1::2], strict=True):
        if not isinstance(member, bytes) or not isinstance(info, bytes):
            raise ValueError("a MEMBERS reply with an entry that is not text")
        members[member.decode("utf-8", "replace")] = info.decode("utf-8", "replace")
    return members
