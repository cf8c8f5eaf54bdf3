"""Numbered publishes (trio_ws.backends.sequence) and the reconnection back-off, without
Redis: the bookkeeping that lets a receiver count what it missed and drop what it has."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_ws.backends.sequence import MAX_NUMBERED_TOPICS, MAX_ORIGINS_PER_TOPIC, GapTracker, Numbering
from trio_ws.backoff import Backoff

from .strategies import examples


@settings(max_examples=examples(300))
@given(st.lists(st.sampled_from(["deliver", "lose", "deliver twice", "retry lost"]), max_size=200))
def test_the_tracker_counts_every_gap_and_drops_every_duplicate(fates: list[str]) -> None:
    """One publisher's messages on one topic, each delivered, lost, delivered twice (a
    retry Redis had taken), or lost and then retried: the receiver gets each delivered
    message once, in order, and `missed` is exactly the lost ones it can see past."""
    numbering, tracker = Numbering(), GapTracker()
    delivered: list[int] = []
    missed = 0
    expected: list[int] = []
    for fate in fates:
        number = numbering.next_number("t")
        arrivals = {"deliver": 1, "lose": 0, "deliver twice": 2, "retry lost": 1}[fate]
        for _ in range(arrivals):
            outcome = tracker.check("t", numbering.origin, number)
            if outcome is not None:
                missed += outcome
                delivered.append(number)
        if arrivals:
            expected.append(number)
        numbering.consume("t")
    assert delivered == expected
    last_seen = expected[-1] if expected else 0
    first_seen = expected[0] if expected else 0
    assert missed == (last_seen - first_seen + 1 - len(expected) if expected else 0)


def test_a_publisher_with_too_many_topics_starts_over_under_a_new_origin() -> None:
    numbering = Numbering()
    first = numbering.origin
    for n in range(MAX_NUMBERED_TOPICS):
        numbering.next_number(f"topic {n}")
    assert numbering.origin == first
    assert numbering.next_number("one too many") == 1
    assert numbering.origin != first
    assert numbering.is_own(first) and numbering.is_own(numbering.origin)  # echoes still skipped
    assert numbering.next_number("topic 0") == 1  # a new origin: receivers start afresh


def test_the_tracker_forgets_a_topic_and_bounds_its_origins() -> None:
    tracker = GapTracker()
    assert tracker.check("t", b"a", 5) == 0  # the first publish seen is taken as it comes
    assert tracker.check("t", b"a", 9) == 3
    tracker.forget("t")  # unsubscribed: what was published meanwhile was not wanted
    assert tracker.check("t", b"a", 20) == 0
    for n in range(MAX_ORIGINS_PER_TOPIC + 1):
        tracker.check("u", b"origin %d" % n, 1)
    assert tracker.check("u", b"origin 0", 1) == 0  # started over: not taken for a duplicate


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.05, 1.0)
    delays = [backoff.next_delay() for _ in range(10)]
    steps = [min(0.05 * 2**n, 1.0) for n in range(10)]
    assert all(step / 2 <= delay <= step for delay, step in zip(delays, steps, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 0.05
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(1.0, 0.5)


class _Collecting:
    """Stands in for the hub: collects what the backend delivers locally."""

    def __init__(self) -> None:
        self.delivered: list[object] = []

    def deliver_locally(self, topic: str, message: object) -> int:
        self.delivered.append(message)
        return 1


@settings(max_examples=examples(500))
@given(
    st.lists(st.binary(max_size=64) | st.builds(lambda b: b"0123456789abcdef" + b, st.binary(max_size=40)))
)
def test_any_payload_from_redis_is_delivered_or_skipped_never_raises(payloads: list[bytes]) -> None:
    """Whatever bytes another Redis client publishes on our channel: each one is
    delivered, dropped as a duplicate, or counted in `rejected`; nothing raises."""
    import trio_ws

    backend = trio_ws.RedisBackend("redis://127.0.0.1", max_message_size=32)
    hub = _Collecting()
    for payload in payloads:
        backend._received(hub, "t", payload)  # type: ignore[arg-type]
    assert len(hub.delivered) + backend.rejected <= len(payloads)
    assert all(isinstance(m, (str, bytes)) for m in hub.delivered)
