"""What changes when a `RedisBackend` talks to one primary of a Redis Cluster (no I/O here).

Plain Redis carries a topic's publishes with SUBSCRIBE/PUBLISH on `<prefix><topic>`. A
cluster shards them: SSUBSCRIBE/SPUBLISH on `<prefix>{<topic>}`, whose hash tag puts the
channel in the same slot as the topic's history and presence keys, so that one script on
one primary writes the entry and publishes it. `key_slot` is the cluster's slot of a key.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

__all__ = ["PubSub", "PLAIN", "SHARDED", "key_slot", "SLOTS"]

SLOTS = 16384


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
        return f"{prefix}{{{topic}}}" if self.tagged else prefix + topic

    def topic(self, prefix: str, channel: bytes) -> str:
        """The topic of one of our channels (undecodable bytes are replaced)."""
        name = channel[len(prefix.encode()) :]
        if self.tagged and name.startswith(b"{") and name.endswith(b"}"):
            name = name[1:-1]
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
