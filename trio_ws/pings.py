"""`Pings`: the pings a connection sent and is waiting to see answered.

`ping()` calls and the keepalive both add one; a pong answers its ping and every ping sent
before it (RFC 6455 5.5.3). Once the connection closes, every `ping()` still waiting wakes
with no round trip.
"""

from __future__ import annotations

import os

import trio

__all__ = ["PendingPing", "Pings"]


class PendingPing:
    """A ping waiting for its pong: when it left, its round trip once answered, and the
    event a `ping()` call waits on (none for the keepalive's own pings)."""

    __slots__ = ("answered", "payload", "rtt", "sent_at")

    def __init__(self, payload: bytes, sent_at: float, answered: trio.Event | None = None) -> None:
        self.payload = payload
        self.sent_at = sent_at
        self.rtt: float | None = None
        self.answered = answered


class Pings:
    """Pings in the order sent, by payload."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[bytes, PendingPing] = {}

    def __contains__(self, payload: bytes) -> bool:
        return payload in self._waiting

    def new_payload(self) -> bytes:
        """A random payload that no waiting ping uses."""
        payload = os.urandom(4)
        while payload in self._waiting:
            payload = os.urandom(4)
        return payload

    def add(self, payload: bytes, sent_at: float, answered: trio.Event | None = None) -> PendingPing:
        """Record a ping that was just sent."""
        ping = self._waiting[payload] = PendingPing(payload, sent_at, answered)
        return ping

    def forget(self, payload: bytes) -> None:
        """Stop waiting for this ping's pong (answered already, or given up)."""
        self._waiting.pop(payload, None)

    def answered(self, payload: bytes, now: float) -> float | None:
        """A pong came: its ping and every earlier one are answered at `now`. Returns its
        ping's round trip (None for a pong that answers no ping of ours)."""
        if payload not in self._waiting:
            return None
        rtt = None
        for key, ping in list(self._waiting.items()):
            ping.rtt = now - ping.sent_at
            if ping.answered is not None:
                ping.answered.set()
            del self._waiting[key]
            if key == payload:
                rtt = ping.rtt
                break
        return rtt

    def wake_all(self) -> None:
        """The connection closed: every waiting `ping()` returns, unanswered."""
        for ping in self._waiting.values():
            if ping.answered is not None:
                ping.answered.set()
