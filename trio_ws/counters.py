"""Plain counts of what servers, their connections, hubs and Redis backends do, read when
asked: the figures behind `trio_ws.stats()` and the Prometheus metrics (`trio_ws.metrics`).

Nothing here locks or looks anything up per message: a message adds to an integer in a
list indexed by its opcode, in the one `ConnectionStats` its server shares with all its
connections. Labelled figures that change per connection or per handshake (HTTP status,
close code) are dicts, and the rest is read from the objects that keep it anyway when a
snapshot is taken. No trio here: the sans-I/O protocol counts into it too.
"""

from __future__ import annotations

import bisect
import dataclasses
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from .frames import Opcode

__all__ = [
    "METRICS",
    "PER_WORKER",
    "EXPORTED",
    "per_worker_name",
    "MetricSpec",
    "Kind",
    "Histogram",
    "HistogramValue",
    "Snapshot",
    "ConnectionStats",
    "ServerStats",
    "HubStats",
    "CLIENT_CONNECTIONS",
    "StatsSource",
    "register",
    "stats",
    "merge",
    "SECONDS",
    "METRICS_PATH",
    "MAX_APPLICATION_CLOSE_CODES",
    "unregister",
    "without_gauges",
]

Kind = Literal["counter", "gauge", "histogram"]

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LIFETIME = (1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 6 * 3600.0, 24 * 3600.0)
REPLAYED = (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (Prometheus conventions), type, labels and meaning."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {spec.name: spec for spec in specs}


METRICS: Mapping[str, MetricSpec] = _specs(
    # Connections (a server's).
    MetricSpec("trio_ws_connections_open", "gauge", "WebSocket connections open now (upgraded, not closed)."),
    MetricSpec("trio_ws_connections_opened_total", "counter", "WebSocket connections upgraded (101)."),
    MetricSpec(
        "trio_ws_handshakes_total", "counter", "HTTP answers to opening handshakes, by status.", ("status",)
    ),
    MetricSpec(
        "trio_ws_closes_total",
        "counter",
        "Connections closed, by close code (1006: no close frame) and by who sent the first close frame "
        '("server", "client", or "none" when TCP ended without one). Codes of 3000 and up, which a peer '
        'may choose, get a series each for the first MAX_APPLICATION_CLOSE_CODES (50) seen, then "other".',
        ("code", "by"),
    ),
    MetricSpec(
        "trio_ws_connection_duration_seconds",
        "histogram",
        "How long connections stayed open, from the 101 to the end of the handler.",
        buckets=LIFETIME,
    ),
    MetricSpec("trio_ws_http2_connections_open", "gauge", "HTTP/2 connections open now (RFC 8441)."),
    MetricSpec(
        "trio_ws_http2_limit_closes_total",
        "counter",
        "HTTP/2 connections closed with ENHANCE_YOUR_CALM for going past one of Http2Limits, by limit.",
        ("limit",),
    ),
    # Traffic.
    MetricSpec(
        "trio_ws_messages_received_total", "counter", "Messages received, by kind (text, binary).", ("kind",)
    ),
    MetricSpec(
        "trio_ws_received_bytes_total",
        "counter",
        "Payload bytes of the messages received, by kind, after inflating.",
        ("kind",),
    ),
    MetricSpec("trio_ws_messages_sent_total", "counter", "Messages sent, by kind (text, binary).", ("kind",)),
    MetricSpec(
        "trio_ws_sent_bytes_total",
        "counter",
        "Payload bytes of the messages sent, by kind, before compressing.",
        ("kind",),
    ),
    MetricSpec(
        "trio_ws_deflate_input_bytes_total",
        "counter",
        "Bytes given to permessage-deflate: to compress (direction sent), or compressed as received "
        "(direction received).",
        ("direction",),
    ),
    MetricSpec(
        "trio_ws_deflate_output_bytes_total",
        "counter",
        "Bytes permessage-deflate made: compressed for sending (direction sent), or inflated from what "
        "was received (direction received). Output over input is the compression ratio.",
        ("direction",),
    ),
    MetricSpec(
        "trio_ws_ping_rtt_seconds",
        "histogram",
        "Round trip of the keepalive pings answered.",
        buckets=SECONDS,
    ),
    MetricSpec(
        "trio_ws_keepalive_failures_total",
        "counter",
        "Connections failed (1011) because a keepalive ping got no pong within ping_timeout.",
    ),
    # Backpressure.
    MetricSpec(
        "trio_ws_send_wait_seconds_total",
        "counter",
        "Time send() waited because more than write_limit bytes were waiting for the network.",
    ),
    MetricSpec(
        "trio_ws_inbox_pauses_total",
        "counter",
        "Times reading stopped because a connection's inbox was full (max_queue, max_queue_bytes).",
    ),
    MetricSpec(
        "trio_ws_send_nowait_refusals_total",
        "counter",
        "try_send_nowait() calls (broadcast, the hub) that queued nothing: the connection was backed up "
        "or closing.",
    ),
    # Hub.
    MetricSpec("trio_ws_hub_publications_total", "counter", "hub.publish() calls in this process."),
    MetricSpec(
        "trio_ws_hub_deliveries_total",
        "counter",
        "Publications taken by a local subscriber (sent, or queued for it), from here or another process.",
    ),
    MetricSpec(
        "trio_ws_hub_dropped_total",
        "counter",
        "Publications a subscriber did not get, by its overflow policy: dropped or replaced in its full "
        "queue, or missed by a replay that fell behind the history.",
        ("policy",),
    ),
    MetricSpec(
        "trio_ws_hub_overflow_disconnects_total",
        "counter",
        'Subscribers dropped for being too slow under on_overflow="disconnect" (a WebSocket is closed '
        "with 1013).",
    ),
    MetricSpec("trio_ws_hub_subscriptions", "gauge", "Subscriptions now (a WebSocket's or a channel's)."),
    MetricSpec(
        "trio_ws_hub_resumes_total",
        "counter",
        "Subscriptions made with since=, by outcome: recovered (everything after it replayed) or "
        "not_recovered.",
        ("outcome",),
    ),
    MetricSpec(
        "trio_ws_hub_replayed_publications",
        "histogram",
        "Publications replayed per recovered resume (counted when it goes live).",
        buckets=REPLAYED,
    ),
    MetricSpec(
        "trio_ws_hub_history_topics", "gauge", "Topics whose history this process keeps in memory now."
    ),
    # Redis.
    MetricSpec(
        "trio_ws_redis_publishes_total",
        "counter",
        "Publishes handed to the Redis backend (with history, appends to a topic's stream).",
    ),
    MetricSpec(
        "trio_ws_redis_undelivered_total",
        "counter",
        "Publishes Redis did not take (unreachable, or an error answer): other processes missed them.",
    ),
    MetricSpec(
        "trio_ws_redis_missed_total",
        "counter",
        "Publishes from other processes that this one's listener missed (gaps in their numbering).",
    ),
    MetricSpec(
        "trio_ws_redis_rejected_total",
        "counter",
        "Payloads on our Redis channels that were not ours in form, skipped.",
    ),
    MetricSpec(
        "trio_ws_redis_in_flight", "gauge", "Publishes sent to Redis and not answered yet (max_in_flight)."
    ),
    MetricSpec(
        "trio_ws_redis_reconnects_total", "counter", "Connections to Redis made again after one was lost."
    ),
    MetricSpec("trio_ws_redis_outages_total", "counter", "Times a connection to Redis was lost."),
    MetricSpec(
        "trio_ws_redis_outage_seconds_total",
        "counter",
        "Time spent without a connection to Redis, from its loss to the reconnection (per connection: "
        "the listener's and the publisher's).",
    ),
    MetricSpec(
        "trio_ws_redis_command_seconds",
        "histogram",
        "Round trip of the Redis commands that are waited for (history, positions, presence, health "
        "checks); pipelined publishes are not timed one by one.",
        buckets=SECONDS,
    ),
)
"""Every metric, by name: what `stats()` gives and `/metrics` exports."""


def per_worker_name(gauge: str) -> str:
    """The name of a gauge's per-worker family: `trio_ws_worker_connections_open` for
    `trio_ws_connections_open`."""
    return "trio_ws_worker_" + gauge.removeprefix("trio_ws_")


PER_WORKER: Mapping[str, MetricSpec] = _specs(
    *(
        MetricSpec(
            per_worker_name(name), "gauge", f"{spec.help} One series per worker.", (*spec.labels, "worker")
        )
        for name, spec in METRICS.items()
        if spec.kind == "gauge"
    )
)
"""Each gauge again, by worker (its slot under `serve --workers N`, else "0"): `/metrics`
gives both a gauge's sum over the living workers and this."""
EXPORTED: Mapping[str, MetricSpec] = {**METRICS, **PER_WORKER}
"""Every family `/metrics` gives."""

METRICS_PATH = "/metrics"
"""Where `ServerConfig(metrics=True)` answers, on the server's own port or its `metrics_port`."""


@dataclasses.dataclass(frozen=True)
class HistogramValue:
    """A histogram as read: the count in each bucket (not cumulative; the last is past
    every bound), and the sum of the values observed."""

    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self.counts)

    def __add__(self, other: HistogramValue) -> HistogramValue:
        if len(self.counts) != len(other.counts):
            raise ValueError("histograms with different buckets")
        return HistogramValue(
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)), self.sum + other.sum
        )


class Histogram:
    """Counts of values per bucket (`bounds`, each the largest value it takes), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def read(self) -> HistogramValue:
        """What it holds now."""
        return HistogramValue(tuple(self.counts), self.total)


Value = float | HistogramValue
Snapshot = dict[str, dict[tuple[str, ...], Value]]
"""Metric name to {label values, in the order of `MetricSpec.labels`: value}."""


class ConnectionStats:
    """What connections count as they go, shared by every connection of one server (and,
    in `CLIENT_CONNECTIONS`, by every client connection): plain integers, summed in place."""

    __slots__ = (
        "binary_received",
        "binary_received_bytes",
        "binary_sent",
        "binary_sent_bytes",
        "deflate_in",
        "deflate_out",
        "inbox_pauses",
        "keepalive_failures",
        "ping_rtt",
        "send_nowait_refusals",
        "send_wait_seconds",
        "text_received",
        "text_received_bytes",
        "text_sent",
        "text_sent_bytes",
    )

    def __init__(self) -> None:
        # Messages and their payload bytes, by kind: one attribute each, the cheapest
        # count there is (an opcode-indexed list costs twice as much per message).
        self.text_received = 0
        self.text_received_bytes = 0
        self.binary_received = 0
        self.binary_received_bytes = 0
        self.text_sent = 0
        self.text_sent_bytes = 0
        self.binary_sent = 0
        self.binary_sent_bytes = 0
        # Indexed [received, sent]: what permessage-deflate was given, and what it made.
        self.deflate_in = [0, 0]
        self.deflate_out = [0, 0]
        self.ping_rtt = Histogram(SECONDS)
        self.keepalive_failures = 0
        self.send_wait_seconds = 0.0
        self.inbox_pauses = 0
        self.send_nowait_refusals = 0

    def received(self, opcode: Opcode, size: int, messages: int = 1) -> None:
        """Count `messages` received of `opcode` (text or binary), with `size` payload bytes
        (the hot path counts inline, the rest through here)."""
        if opcode is Opcode.TEXT:
            self.text_received += messages
            self.text_received_bytes += size
        else:
            self.binary_received += messages
            self.binary_received_bytes += size

    def sent(self, opcode: Opcode, size: int, messages: int = 1) -> None:
        """Count `messages` sent of `opcode`, with `size` payload bytes."""
        if opcode is Opcode.TEXT:
            self.text_sent += messages
            self.text_sent_bytes += size
        else:
            self.binary_sent += messages
            self.binary_sent_bytes += size

    def snapshot(self) -> Snapshot:
        """The traffic and backpressure figures, by metric name."""

        def by_kind(text: int, binary: int) -> dict[tuple[str, ...], Value]:
            return {("text",): text, ("binary",): binary}

        def by_direction(counts: list[int]) -> dict[tuple[str, ...], Value]:
            return {("received",): counts[0], ("sent",): counts[1]}

        return {
            "trio_ws_messages_received_total": by_kind(self.text_received, self.binary_received),
            "trio_ws_received_bytes_total": by_kind(self.text_received_bytes, self.binary_received_bytes),
            "trio_ws_messages_sent_total": by_kind(self.text_sent, self.binary_sent),
            "trio_ws_sent_bytes_total": by_kind(self.text_sent_bytes, self.binary_sent_bytes),
            "trio_ws_deflate_input_bytes_total": by_direction(self.deflate_in),
            "trio_ws_deflate_output_bytes_total": by_direction(self.deflate_out),
            "trio_ws_ping_rtt_seconds": {(): self.ping_rtt.read()},
            "trio_ws_keepalive_failures_total": {(): self.keepalive_failures},
            "trio_ws_send_wait_seconds_total": {(): self.send_wait_seconds},
            "trio_ws_inbox_pauses_total": {(): self.inbox_pauses},
            "trio_ws_send_nowait_refusals_total": {(): self.send_nowait_refusals},
        }


CLIENT_CONNECTIONS = ConnectionStats()
"""Where every client connection of this process counts its traffic (not exported)."""


MAX_APPLICATION_CLOSE_CODES = 50
"""Close codes of 3000 and up (registered or private: a peer may close with any of 2,000)
that get a `trio_ws_closes_total` series of their own; later ones count as "other", so a
peer cannot grow the server's counts, or Prometheus's series, without bound."""


class ServerStats(ConnectionStats):
    """A server's counts: its connections' traffic, and the handshakes and closes."""

    __slots__ = ("_application_codes", "closes", "duration", "handshakes", "http2_limit_closes")

    def __init__(self) -> None:
        super().__init__()
        self.http2_limit_closes: dict[str, int] = {}  # Http2Limits field: connections closed
        self.handshakes: dict[int, int] = {}  # HTTP status: answers
        self.closes: dict[tuple[str, str], int] = {}  # (code label, who closed first): connections
        self.duration = Histogram(LIFETIME)
        self._application_codes: set[int] = set()  # the codes of 3000 and up with a label of their own

    def answered(self, status: int) -> None:
        """Count an HTTP answer to an opening handshake."""
        self.handshakes[status] = self.handshakes.get(status, 0) + 1

    @property
    def opened(self) -> int:
        """Connections upgraded: the 101 answers."""
        return self.handshakes.get(101, 0)

    def closed(self, code: int, by: str, seconds: float) -> None:
        """Count a connection that ended, after `seconds` open."""
        label = str(code)
        if code >= 3000 and code not in self._application_codes:
            # Below 3000 the protocol lets through only the codes RFC 6455 defines.
            if len(self._application_codes) < MAX_APPLICATION_CLOSE_CODES:
                self._application_codes.add(code)
            else:
                label = "other"
        key = (label, by)
        self.closes[key] = self.closes.get(key, 0) + 1
        self.duration.observe(seconds)

    def server_snapshot(self, open_connections: int, open_http2: int = 0) -> Snapshot:
        """Every figure of the server, by metric name."""
        return {
            "trio_ws_connections_open": {(): open_connections},
            "trio_ws_connections_opened_total": {(): self.opened},
            "trio_ws_http2_connections_open": {(): open_http2},
            "trio_ws_http2_limit_closes_total": {(limit,): n for limit, n in self.http2_limit_closes.items()},
            "trio_ws_handshakes_total": {(str(status),): n for status, n in self.handshakes.items()},
            "trio_ws_closes_total": {key: n for key, n in self.closes.items()},
            "trio_ws_connection_duration_seconds": {(): self.duration.read()},
            **self.snapshot(),
        }


class HubStats:
    """What a hub counts as it goes; the rest of its figures are read from its state."""

    __slots__ = ("deliveries", "dropped", "overflow_disconnects", "publications", "replayed", "resumes")

    def __init__(self) -> None:
        self.publications = 0
        self.deliveries = 0
        self.overflow_disconnects = 0
        self.dropped: dict[str, int] = {}  # by policy, of the subscriptions that ended
        self.resumes = {"recovered": 0, "not_recovered": 0}
        self.replayed = Histogram(REPLAYED)

    def resumed(self, recovered: bool) -> None:
        """Count a subscription made with since=."""
        self.resumes["recovered" if recovered else "not_recovered"] += 1


@runtime_checkable
class StatsSource(Protocol):
    """A server, a hub or a backend: something with figures to give."""

    def stats(self) -> Snapshot:
        """Its figures now, by metric name."""
        ...


_sources: weakref.WeakSet[StatsSource] = weakref.WeakSet()


def register(source: StatsSource) -> None:
    """Count `source` in `stats()` for as long as it lives (servers and hubs register
    themselves while they run)."""
    _sources.add(source)


def unregister(source: StatsSource) -> None:
    """Stop counting `source` in `stats()`."""
    _sources.discard(source)


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of `snapshots`, figure by figure (histograms bucket by bucket)."""
    total: Snapshot = {}
    for snapshot in snapshots:
        for name, values in snapshot.items():
            into = total.setdefault(name, {})
            for labels, value in values.items():
                before = into.get(labels)
                if before is None:
                    into[labels] = value
                elif isinstance(before, HistogramValue) and isinstance(value, HistogramValue):
                    into[labels] = before + value
                elif isinstance(before, HistogramValue) or isinstance(value, HistogramValue):
                    raise ValueError(f"{name}{labels}: a histogram and a number cannot be added")
                else:
                    into[labels] = before + value
    return total


def without_gauges(snapshot: Snapshot) -> Snapshot:
    """Its counters and histograms: what still counts once its source is gone."""
    return {name: values for name, values in snapshot.items() if METRICS[name].kind != "gauge"}


def stats() -> Snapshot:
    """Every figure of this process: the sum over its running servers and open hubs (with
    their backends), by metric name, then by label values (in `METRICS[name].labels`'
    order). The same figures `/metrics` exports, as plain values, for apps that report
    elsewhere: `trio_ws.stats()["trio_ws_connections_open"][()]`."""
    return merge(source.stats() for source in list(_sources))
