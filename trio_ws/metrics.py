"""Prometheus metrics: `trio_ws.stats()` exported by `prometheus-client` (the `metrics` extra),
summed over every worker of `python -m trio_ws serve --workers N`.

Counts stay plain integers where the work happens (`trio_ws.counters`); an `Exporter` reads
them when scraped (a custom collector), so a message pays nothing for being exported.

Across workers, each worker writes its snapshot to a file of its own in a directory the
supervisor made, every `SHARE_INTERVAL` seconds and once more as it stops, and holds a lock
on another for as long as it lives. A scrape of any
worker (or of the supervisor's `--metrics-port`) adds up this process's live figures and
the others' files: counters and histograms over every worker that ever ran, dead ones
included, so that a worker's death never takes a total back; gauges only over the living,
labelled with their `worker` slot, so that a dead worker's open connections leave with it
and its replacement starts from zero.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import secrets
import tempfile
from collections.abc import Iterator
from typing import Any

import h11
import trio

from .counters import (
    EXPORTED,
    METRICS,
    METRICS_PATH,
    HistogramValue,
    Snapshot,
    Value,
    merge,
    per_worker_name,
    stats,
    without_gauges,
)
from .http import Response

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover -- the extra is missing
    raise ImportError("trio_ws's metrics need prometheus-client: pip install 'trio-ws[metrics]'") from exc

__all__ = [
    "Exporter",
    "EXPORTER",
    "METRICS_PATH",
    "SHARE_INTERVAL",
    "CONTENT_TYPE",
    "metrics_response",
    "serve_metrics",
    "to_json",
    "from_json",
]

SHARE_INTERVAL = 1.0
"""Seconds between two snapshots a worker writes for the others (a scrape's totals lag by at most this)."""
CONTENT_TYPE = CONTENT_TYPE_LATEST
logger = logging.getLogger("trio_ws.metrics")
MAX_REQUEST_HEAD = 16 * 1024  # a scrape's request head; more is refused (431)
MAX_SCRAPERS = 16
"""Connections the metrics port holds at once; one more is closed as soon as it is accepted."""
SCRAPER_IDLE_TIMEOUT = 60.0
"""Seconds a metrics-port connection may wait for its next request (keep-alive between
scrapes), or send one, before it is closed."""


def to_json(snapshot: Snapshot) -> dict[str, list[Any]]:
    """A snapshot as JSON values: per metric, a list of [label values, value], a histogram's
    value being {"counts": [...], "sum": ...}."""
    return {
        name: [
            [
                list(labels),
                {"counts": list(value.counts), "sum": value.sum}
                if isinstance(value, HistogramValue)
                else value,
            ]
            for labels, value in values.items()
        ]
        for name, values in snapshot.items()
    }


def from_json(data: Any) -> Snapshot:
    """`to_json`'s inverse; metrics this version does not know are skipped, and a value of
    the wrong shape is a ValueError."""
    snapshot: Snapshot = {}
    for name, entries in data.items():
        spec = METRICS.get(name)
        if spec is None:
            continue
        values: dict[tuple[str, ...], Value] = {}
        for labels, value in entries:
            if len(labels) != len(spec.labels) or not all(isinstance(label, str) for label in labels):
                raise ValueError(f"{name}: labels {labels!r} do not match {spec.labels}")
            if spec.kind == "histogram":
                counts = tuple(int(count) for count in value["counts"])
                if len(counts) != len(spec.buckets) + 1:
                    raise ValueError(f"{name}: {len(counts)} buckets, not {len(spec.buckets) + 1}")
                values[tuple(labels)] = HistogramValue(counts, float(value["sum"]))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                values[tuple(labels)] = value
            else:
                raise ValueError(f"{name}: {value!r} is not a number")
        snapshot[name] = values
    return snapshot


class Exporter:
    """What a scrape answers in this process: its own figures (`trio_ws.stats()`), and, once
    `share_through` was called (a worker of a supervisor, or the supervisor itself), the
    other workers' last snapshots."""

    def __init__(self) -> None:
        self.directory: str | None = None
        self.worker: str | None = None  # this process's slot, if it is a worker
        self._write_failed = False  # logged once per outage of the shared directory
        # This process's files: `<name>.json`, its snapshot, and `<name>.lock`, locked for
        # as long as it lives. The kernel lets go of the lock when the process dies, however
        # it dies, so the lock says who is alive where a pid could be reused. The name is
        # unique (pid and a random part), so a reused pid never writes over a dead worker's.
        self._name = f"worker-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock: int | None = None

    def share_through(self, directory: str, worker: str | None) -> None:
        """Read the other workers' snapshots in `directory`; write this process's there as
        `worker` (None: the supervisor, which only reads)."""
        self.directory, self.worker = directory, worker
        if worker is not None:
            self._hold_lock()

    @property
    def _own_file(self) -> str | None:
        if self.directory is None or self.worker is None:
            return None
        return os.path.join(self.directory, self._name + ".json")

    def _hold_lock(self) -> None:
        """Lock this process's lock file (again, if the directory lost it)."""
        assert self.directory is not None
        path = os.path.join(self.directory, self._name + ".lock")
        if self._lock is not None:
            if os.path.exists(path):
                return
            os.close(self._lock)
            self._lock = None
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: never held elsewhere
        self._lock = descriptor

    def write_snapshot(self) -> None:
        """Write this process's figures for the others (atomically: a reader sees the last
        whole snapshot)."""
        path = self._own_file
        if path is None:
            return
        document = {"pid": os.getpid(), "worker": self.worker, "stats": to_json(stats())}
        temporary = None
        try:
            self._hold_lock()
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".snapshot-")
            with os.fdopen(descriptor, "w") as file:
                json.dump(document, file)
            os.replace(temporary, path)
        except OSError as exc:  # the directory is gone, or the disk full: the worker serves on
            if not self._write_failed:
                logger.warning("cannot share this worker's metrics in %s (%s); retrying", self.directory, exc)
            self._write_failed = True
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        else:
            if self._write_failed:
                logger.warning("sharing this worker's metrics in %s again", self.directory)
            self._write_failed = False

    async def share(self) -> None:
        """Write this process's snapshot every `SHARE_INTERVAL` seconds, and once more when
        cancelled (as the worker stops)."""
        try:
            while True:
                self.write_snapshot()
                await trio.sleep(SHARE_INTERVAL)
        finally:
            self.write_snapshot()

    def _workers(self) -> Iterator[tuple[str, bool, Snapshot]]:
        """(worker slot, alive, snapshot) of every process to count, this one live."""
        own = self._own_file
        if self.worker is not None or self.directory is None:
            yield self.worker or "0", True, stats()
        if self.directory is None:
            return
        for entry in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, entry)
            if not (entry.startswith("worker-") and entry.endswith(".json")) or path == own:
                continue
            try:
                with open(path) as file:
                    document = json.load(file)
                snapshot = from_json(document["stats"])
                worker = str(document["worker"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # gone meanwhile, or not ours: the next scrape reads the next one
            yield worker, _locked(path.removesuffix(".json") + ".lock"), snapshot

    def snapshot(self) -> Snapshot:
        """Every figure to export: counters and histograms summed over every worker;
        gauges summed over the living workers, and again by worker (`PER_WORKER`)."""
        summed: list[Snapshot] = []
        for worker, alive, snapshot in self._workers():
            summed.append(without_gauges(snapshot))
            if alive:
                gauges = {name: values for name, values in snapshot.items() if METRICS[name].kind == "gauge"}
                summed.append(gauges)
                summed.append(
                    {
                        per_worker_name(name): {(*labels, worker): value for labels, value in values.items()}
                        for name, values in gauges.items()
                    }
                )
        return merge(summed)

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus-client's collector interface)."""
        snapshot = self.snapshot()
        for name, spec in EXPORTED.items():
            values = snapshot.get(name, {})
            family: Metric
            if spec.kind == "counter":
                counter = CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=spec.labels)
                for labels, value in values.items():
                    counter.add_metric(labels, float(value))  # type: ignore[arg-type]
                family = counter
            elif spec.kind == "gauge":
                gauge = GaugeMetricFamily(name, spec.help, labels=spec.labels)
                for labels, value in values.items():
                    gauge.add_metric(labels, float(value))  # type: ignore[arg-type]
                family = gauge
            else:
                histogram = HistogramMetricFamily(name, spec.help, labels=spec.labels)
                for labels, value in values.items():
                    assert isinstance(value, HistogramValue)
                    histogram.add_metric(list(labels), _cumulative(spec.buckets, value), value.sum)
                family = histogram
            yield family

    def render(self) -> bytes:
        """The exposition text of every metric."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _cumulative(bounds: tuple[float, ...], value: HistogramValue) -> list[tuple[str, float]]:
    running = 0
    buckets = []
    for bound, count in zip((*bounds, math.inf), value.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), float(running)))
    return buckets


def _locked(path: str) -> bool:
    """Whether a living process holds the lock file at `path` (a worker's: see `Exporter`)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)


EXPORTER = Exporter()
"""This process's exporter: `/metrics` answers with it."""


def metrics_response() -> Response:
    """The answer to `GET /metrics` on a server's own port: `EXPORTER`'s figures."""
    return Response(200, {"Content-Type": CONTENT_TYPE}, EXPORTER.render())


async def serve_metrics(
    host: str,
    port: int,
    exporter: Exporter = EXPORTER,
    *,
    max_scrapers: int = MAX_SCRAPERS,
    idle_timeout: float = SCRAPER_IDLE_TIMEOUT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer `GET /metrics` on a port of its own (`metrics_port`), plain HTTP/1.1 with
    keep-alive, to at most `max_scrapers` connections at once, each closed once it is
    `idle_timeout` seconds without a whole request; the port is given to `task_status`
    once it listens."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    scrapers = trio.CapacityLimiter(max_scrapers)

    async def answer(stream: trio.SocketStream) -> None:
        try:
            scrapers.acquire_nowait()
        except trio.WouldBlock:  # full: a scraper that comes back later gets in
            await trio.aclose_forcefully(stream)
            return
        try:
            await _answer_scrapes(stream, exporter, idle_timeout)
        finally:
            scrapers.release()

    await trio.serve_listeners(answer, listeners)


async def _answer_scrapes(stream: trio.abc.Stream, exporter: Exporter, idle_timeout: float) -> None:
    """One scraper's connection: its requests answered in turn (keep-alive), each within
    `idle_timeout` of the last."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    deadline = trio.current_time() + idle_timeout  # for the whole of the next request
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async with stream:
            while True:
                try:
                    event = connection.next_event()
                except h11.RemoteProtocolError as exc:  # a malformed request: say so, then close
                    if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await _send(
                            stream, connection, exc.error_status_hint, b"bad request\n", b"text/plain"
                        )
                    return
                if event is h11.NEED_DATA:
                    data: bytes | bytearray = b""
                    with trio.move_on_at(deadline):
                        data = await stream.receive_some(65536)
                    if not data:  # closed, or idle too long (however slowly it sends)
                        return
                    connection.receive_data(bytes(data))
                elif isinstance(event, h11.Request):
                    await _answer(stream, connection, event, exporter)
                elif event is h11.PAUSED:  # one request answered: the next, unless it must close
                    if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                        return
                    connection.start_next_cycle()
                    deadline = trio.current_time() + idle_timeout
                elif isinstance(event, h11.ConnectionClosed):
                    return


async def _answer(
    stream: trio.abc.Stream, connection: h11.Connection, request: h11.Request, exporter: Exporter
) -> None:
    target = request.target.split(b"?", 1)[0]
    if request.method not in (b"GET", b"HEAD"):
        await _send(stream, connection, 405, b"only GET\n", b"text/plain", head=False)
    elif target != METRICS_PATH.encode():
        await _send(stream, connection, 404, b"metrics are at /metrics\n", b"text/plain")
    else:
        body = exporter.render()
        await _send(stream, connection, 200, body, CONTENT_TYPE.encode(), head=request.method == b"HEAD")


async def _send(
    stream: trio.abc.Stream,
    connection: h11.Connection,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    head: bool = False,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    out = connection.send(h11.Response(status_code=status, headers=headers)) or b""
    if not head:
        out += connection.send(h11.Data(data=body)) or b""
    out += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)
