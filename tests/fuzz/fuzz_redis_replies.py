"""Fuzz what a RedisBackend receives from Redis: RESP bytes, parsed by hiredis, handed to the
listener as pushes (pub/sub messages, with and without positions) and to every decoder of a
reply (READ and XRANGE batches, POSITION, presence MEMBERS, CLUSTER SLOTS).

Invariants: nothing raises but the decoders' own "not in form" errors (and ConnectionError
from the RESP reader for bytes that are not RESP: hiredis raises TypeError for a RESP3 map
keyed by an aggregate, which once escaped the listener); whatever the listener
delivers is a publication of a str topic with str or bytes data (and a position in range
when it has one), and anything else is counted in `rejected`.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from trio_ws.backends.cluster import parse_slots
    from trio_ws.backends.presence import members_of
    from trio_ws.backends.redis import RedisBackend
    from trio_ws.backends.resp import NO_REPLY, RespReader
    from trio_ws.backends.streams import MalformedPublication, decode_entries, position_of, read_reply
    from trio_ws.history import MAX_EPOCH_LENGTH, MAX_OFFSET, Publication
    from trio_ws.messages import Data


class Collector:
    """A hub that keeps what the backend delivers."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, Data, Publication | None]] = []

    def deliver_locally(self, topic: str, message: Data, publication: Publication | None = None) -> int:
        self.delivered.append((topic, message, publication))
        return 0


BACKENDS = [RedisBackend("redis://127.0.0.1:1/0", max_message_size=4096), RedisBackend(
    "redis://127.0.0.1:1/0", max_message_size=4096, cluster_node="fuzz"
)]  # fmt: skip


def check_decoders(reply: object) -> None:
    for decode in (
        lambda r: decode_entries("t", "e", r),
        read_reply,
        position_of,
        members_of,
        parse_slots,
    ):
        with contextlib.suppress(MalformedPublication, ValueError):
            decode(reply)


def one_input(data: bytes) -> None:
    """data[0] picks plain or sharded pub/sub; the rest is what Redis sends, as RESP."""
    if not data:
        return
    backend = BACKENDS[data[0] % 2]
    reader = RespReader()
    reader.feed(data[1:])
    hub = Collector()
    rejected = backend.rejected
    replies = 0
    while True:
        try:
            reply = reader.reply()
        except ConnectionError:  # not RESP: the connection would be dropped
            break
        if reply is NO_REPLY:
            break
        replies += 1
        backend.handle_push(hub, reply)
        check_decoders(reply)
        if replies > 64:
            break
    for topic, message, publication in hub.delivered:
        assert isinstance(topic, str) and isinstance(message, str | bytes)
        if publication is not None:
            assert publication.offset is not None and 0 <= publication.offset <= MAX_OFFSET
            assert len(publication.epoch) <= MAX_EPOCH_LENGTH
            assert publication.data == message
    assert backend.rejected >= rejected


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
