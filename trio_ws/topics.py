"""Topic names: what a hub accepts as a topic, checked where a topic enters (no I/O here).

A topic is a non-empty `str` of at most `MAX_TOPIC_BYTES` bytes in UTF-8 (so it has no
lone surrogate: it must be sendable to Redis and across processes). Anything else a
client can put in a string (braces, NUL, newlines, `#`, spaces) is a topic like any other.
`presence_topic(topic)` is valid whenever `topic` is.
"""

from __future__ import annotations

__all__ = ["MAX_TOPIC_BYTES", "PRESENCE_SUFFIX", "check_topic", "presence_topic", "is_presence_topic"]

MAX_TOPIC_BYTES = 1024
"""The longest topic, in bytes of UTF-8 (its presence topic may add `PRESENCE_SUFFIX`)."""
PRESENCE_SUFFIX = "#presence"
"""What `presence_topic` adds to a topic's name."""


def presence_topic(topic: str) -> str:
    """The topic on which joins and leaves of `topic` are published, as JSON:
    {"type": "join" | "leave", "id", "info"}; subscribe to it to watch them."""
    return f"{topic}{PRESENCE_SUFFIX}"


def is_presence_topic(topic: str) -> bool:
    """Whether `topic` is the presence topic of another: it keeps no history."""
    return topic.endswith(PRESENCE_SUFFIX) and len(topic) > len(PRESENCE_SUFFIX)


def check_topic(topic: object) -> str:
    """`topic` if it is a valid topic, else ValueError saying why (a client may have chosen it)."""
    if not isinstance(topic, str):
        raise ValueError(f"a topic is a str, not {type(topic).__name__}")
    if not topic:
        raise ValueError("a topic must not be empty")
    base = topic[: -len(PRESENCE_SUFFIX)] if is_presence_topic(topic) else topic
    try:
        size = len(base.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"a topic must be valid Unicode text (no lone surrogates): {topic[:40]!r}") from None
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"a topic is at most {MAX_TOPIC_BYTES} bytes in UTF-8, not {size}")
    return topic
