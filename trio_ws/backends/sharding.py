"""What changes when a `RedisBackend` talks to one primary of a Redis Cluster (no I/O here).

Plain Redis carries a topic's publishes with SUBSCRIBE/PUBLISH on `<prefix><topic>`. A
cluster shards them: SSUBSCRIBE/SPUBLISH on `<prefix>{<topic>}`, whose hash tag puts the
channel in the same slot as the topic's history and presence keys, so that one script on
one primary writes the entry and publishes it. `key_slot` is the cluster's slot of a key.

A topic goes in a hash tag escaped (`hash_tag`: `%` and `}` as `%25` and `%7D`), so that
every topic, braces and all, makes a tag that ends where it should and names one slot:
`{a}b}` would otherwise tag only `a`, and `}` nothing at all, scattering a topic's keys and
channel over several slots.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

__all__ = ["PubSub", "PLAIN", "SHARDED", "key_slot", "SLOTS", "hash_tag", "topic_of_tag", "tagged"]

SLOTS = 16384


def hash_tag(topic: str) -> str:
    """`topic` escaped for a hash tag: no `}` in it, and no two topics alike."""
    return topic.replace("%", "%25").replace("}", "%7D")


def topic_of_tag(tag: str) -> str:
    """The topic `hash_tag` escaped."""
    return tag.replace("%7D", "}").replace("%25", "%")


def tagged(prefix: str, topic: str) -> str:
    """`<prefix>{<topic, escaped>}`: how a topic's keys (and sharded channel) start."""
    return f"{prefix}{{{hash_tag(topic)}}}"


@dataclass(frozen=True, slots=True)
class PubSub:
    """The commands, push kinds and channel names of one flavour of Redis pub/sub."""

    subscribe: str
    unsubscribe: str
    publish: str
    message_kind: bytes  # the first element of a pushed message
    subscribed_kind: bytes  # ... of the confirmation of a subscription
    unsubscribed_kind: bytes  # ... of an unsubscription (Redis's own, when a slot moves)
    tagged: bool  # whether the topic goes in a hash tag: `{topic}`

    def channel(self, prefix: str, topic: str) -> str:
        return tagged(prefix, topic) if self.tagged else prefix + topic

    def topic(self, prefix: str, channel: bytes) -> str:
        """The topic of one of our channels (undecodable bytes are replaced)."""
        name = channel[len(prefix.encode()) :]
        if self.tagged and name.startswith(b"{") and name.endswith(b"}"):
            return topic_of_tag(name[1:-1].decode("utf-8", "replace"))
        return name.decode("utf-8", "replace")

    def publish_prefix(self) -> bytes:
        """How each publish this flavour sends starts, in RESP (3 arguments)."""
        return b"*3\r\n$%d\r\n%s\r\n" % (len(self.publish), self.publish.encode())


PLAIN = PubSub("SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", b"message", b"subscribe", b"unsubscribe", False)
SHARDED = PubSub("SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH", b"smessage", b"ssubscribe", b"sunsubscribe", True)


def key_slot(key: str) -> int:
    """The cluster slot of `key`: CRC16 (XMODEM) of its hash tag if it has a non-empty
    one (the text between the first `{` and the next `}`), else of the whole key."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS
