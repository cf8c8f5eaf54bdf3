"""Properties of the counts and of their export, over arbitrary values:

- the traffic counts equal a model of what was sent, whatever the messages (text or
  binary, any size, whole or fragmented, compressed or not, received whole or streamed);
- a snapshot survives its JSON form (how workers share it), and a file in the shared
  directory that is not a snapshot is skipped, never fatal;
- a model of workers that count, write their snapshots and die: after every step the
  exported counters are the sum over every worker that ever wrote, never less than before,
  and the gauges are those of the living only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import trio_ws
from trio_ws.counters import (
    MAX_APPLICATION_CLOSE_CODES,
    METRICS,
    HistogramValue,
    ServerStats,
    Snapshot,
    per_worker_name,
)
from trio_ws.metrics import Exporter, from_json, to_json

from .prometheus import get

messages = st.lists(
    st.tuples(
        st.one_of(st.text(max_size=300), st.binary(max_size=3000)),
        st.integers(min_value=1, max_value=4),  # fragments
    ),
    max_size=12,
)


def fragments(message: str | bytes, count: int) -> list[str | bytes]:
    step = max(1, -(-len(message) // count))
    parts = [message[i : i + step] for i in range(0, len(message), step)]
    return parts or [message]


@settings(deadline=None, max_examples=40)
@given(messages=messages, compression=st.booleans(), streaming=st.booleans())
def test_traffic_counts_equal_the_model(
    messages: list[tuple[str | bytes, int]], compression: bool, streaming: bool
) -> None:
    async def echo(ws: trio_ws.WebSocket) -> None:
        while True:
            if streaming:
                parts = [part async for part in ws.recv_streaming()]
                message: str | bytes = (
                    "".join(parts) if parts and isinstance(parts[0], str) else b"".join(parts)
                )  # type: ignore[arg-type]
            else:
                message = await ws.recv()
            await ws.send(message)

    async def main() -> ServerSnapshot:
        config = trio_ws.ServerConfig(handler=echo, compression="deflate" if compression else None)
        async with trio_ws.testing.open_in_memory_server(config) as server:
            async with server.connect("/") as ws:
                for message, count in messages:
                    await ws.send(fragments(message, count) if count > 1 else message)
                    assert await ws.recv() == message
            return server.server.stats()

    snapshot = trio.run(main)
    expected: dict[tuple[str, str], int] = {}
    for kind, name in (("text", str), ("binary", bytes)):
        sent = [m for m, _ in messages if isinstance(m, name)]
        size = sum(len(m.encode() if isinstance(m, str) else m) for m in sent)
        expected[("trio_ws_messages_received_total", kind)] = len(sent)
        expected[("trio_ws_messages_sent_total", kind)] = len(sent)
        expected[("trio_ws_received_bytes_total", kind)] = size
        expected[("trio_ws_sent_bytes_total", kind)] = size
    got = {(name, kind): snapshot[name][(kind,)] for name, kind in expected}
    assert got == expected
    inflated = snapshot["trio_ws_deflate_output_bytes_total"][("received",)]
    compressed_in = snapshot["trio_ws_deflate_input_bytes_total"][("sent",)]
    total = sum(len(m.encode() if isinstance(m, str) else m) for m, _ in messages)
    # With compression every message is compressed both ways: what was inflated, and what
    # was given to deflate, are the payloads.
    assert (inflated, compressed_in) == ((total, total) if compression else (0, 0))


ServerSnapshot = Snapshot

names = st.sampled_from(sorted(METRICS))
label_values = st.text(max_size=8)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    snapshot: Snapshot = {}
    for name in draw(st.lists(names, unique=True, max_size=6)):
        spec = METRICS[name]
        values: dict[tuple[str, ...], Any] = {}
        for labels in draw(st.lists(st.tuples(*[label_values] * len(spec.labels)), unique=True, max_size=3)):
            if spec.kind == "histogram":
                counts = draw(
                    st.lists(
                        st.integers(0, 10**6), min_size=len(spec.buckets) + 1, max_size=len(spec.buckets) + 1
                    )
                )
                values[labels] = HistogramValue(tuple(counts), draw(st.floats(0, 1e6)))
            else:
                values[labels] = draw(st.integers(0, 10**12))
        snapshot[name] = values
    return snapshot


@given(snapshot=snapshots())
def test_a_snapshot_survives_its_json_form(snapshot: Snapshot) -> None:
    assert from_json(json.loads(json.dumps(to_json(snapshot)))) == snapshot


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200)
@given(document=json_values, good=snapshots())
def test_a_file_that_is_not_a_snapshot_is_skipped(
    tmp_path_factory: pytest.TempPathFactory, document: object, good: Snapshot
) -> None:
    directory = tmp_path_factory.mktemp("shared")
    (directory / "worker-1.json").write_text(json.dumps(document))
    (directory / "worker-2.json").write_text(
        json.dumps({"pid": 1, "worker": "0", "stats": {"trio_ws_hub_dropped_total": document}})
    )
    (directory / "worker-3.json").write_bytes(b"\xff not json")
    (directory / "worker-4.json").write_text(
        json.dumps({"pid": os.getpid(), "worker": "1", "stats": to_json(good)})
    )
    exporter = Exporter()
    exporter.share_through(str(directory), None)
    with held_lock(directory / "worker-4.lock"):  # worker 4 is alive
        snapshot = exporter.snapshot()  # never raises
    assert exporter.render()
    # The good file counts whole (the other files give nothing, or, by chance, a valid
    # figure of one metric, left out of the comparison).
    for name, values in good.items():
        if name == "trio_ws_hub_dropped_total":
            continue
        for labels, value in values.items():
            assert snapshot[name][labels] == value
            if METRICS[name].kind == "gauge":
                assert snapshot[per_worker_name(name)][(*labels, "1")] == value


@contextlib.contextmanager
def held_lock(path: Path) -> Iterator[int]:
    """Hold a worker's lock file, as a living worker does."""
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield descriptor
    finally:
        os.close(descriptor)  # the lock goes with it, as with a process that dies


class Workers(RuleBasedStateMachine):
    """Workers of a supervisor, as the exporter sees them through their files: a worker is
    alive while it holds its lock file, and every one reuses the same pid (the worst case
    of pid reuse: nothing may be told apart by the pid)."""

    @initialize()
    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="trio_ws-metrics-model-"))
        self.exporter = Exporter()
        self.exporter.share_through(str(self.directory), None)
        self.files: dict[int, dict[str, Any]] = {}  # file number: what was written
        self.locks: dict[int, int] = {}  # file number: the lock of a living worker
        self.last_total = 0.0

    def write(self, number: int, slot: str, opened: int, open_now: int) -> None:
        document = {
            "pid": 4242,
            "worker": slot,
            "stats": {
                "trio_ws_connections_opened_total": [[[], opened]],
                "trio_ws_connections_open": [[[], open_now]],
            },
        }
        (self.directory / f"worker-{number}.json").write_text(json.dumps(document))
        self.files[number] = document

    @rule(
        number=st.integers(0, 5),
        slot=st.sampled_from(["0", "1"]),
        more=st.integers(0, 50),
        open_now=st.integers(0, 20),
    )
    def a_living_worker_counts(self, number: int, slot: str, more: int, open_now: int) -> None:
        before = self.files.get(number)
        if before is not None and number not in self.locks:
            return  # that worker is dead: it writes no more
        if before is None:
            descriptor = os.open(self.directory / f"worker-{number}.lock", os.O_CREAT | os.O_RDWR)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.locks[number] = descriptor
        opened = (0 if before is None else before["stats"]["trio_ws_connections_opened_total"][0][1]) + more
        self.write(number, slot if before is None else before["worker"], opened, open_now)

    @rule(number=st.integers(0, 5))
    def a_worker_dies(self, number: int) -> None:
        descriptor = self.locks.pop(number, None)
        if descriptor is not None:
            os.close(descriptor)  # SIGKILL: its files stay, its lock goes

    @invariant()
    def totals_are_every_worker_and_gauges_the_living(self) -> None:
        if not hasattr(self, "exporter"):
            return
        snapshot = self.exporter.snapshot()
        total = sum(d["stats"]["trio_ws_connections_opened_total"][0][1] for d in self.files.values())
        assert snapshot.get("trio_ws_connections_opened_total", {}).get((), 0) == total
        assert total >= self.last_total  # a death never takes a total back
        self.last_total = total
        gauges: dict[tuple[str, ...], float] = {}
        for number, document in self.files.items():
            if number in self.locks:
                key = (document["worker"],)
                gauges[key] = gauges.get(key, 0) + document["stats"]["trio_ws_connections_open"][0][1]
        assert snapshot.get("trio_ws_worker_connections_open", {}) == gauges
        living = sum(gauges.values())
        assert snapshot.get("trio_ws_connections_open", {}) == ({(): living} if gauges else {})

    def teardown(self) -> None:
        for descriptor in getattr(self, "locks", {}).values():
            os.close(descriptor)
        if hasattr(self, "directory"):
            shutil.rmtree(self.directory)


TestWorkers = Workers.TestCase
TestWorkers.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)


async def test_a_vanished_shared_directory_does_not_end_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The supervisor's directory removed under a worker (a tmp cleaner, a full disk): the
    worker logs it once, serves on, and shares again once it is back."""
    async with trio_ws.open_server(lambda ws: ws.wait_closed(), "127.0.0.1", 0):  # a gauge to see
        directory = tmp_path / "shared"
        directory.mkdir()
        exporter = Exporter()
        exporter.share_through(str(directory), "0")
        exporter.write_snapshot()
        shared = sorted(path.suffix for path in directory.iterdir())
        assert shared == [".json", ".lock"]
        reader = Exporter()
        reader.share_through(str(directory), None)
        assert reader.snapshot()["trio_ws_worker_connections_open"] == {("0",): 0}  # seen alive
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
        for _ in range(3):
            exporter.write_snapshot()  # never raises
        failures = [record for record in caplog.records if "cannot share" in record.getMessage()]
        assert len(failures) == 1
        directory.mkdir()
        exporter.write_snapshot()
        assert sorted(path.suffix for path in directory.iterdir()) == [".json", ".lock"]
        assert reader.snapshot()["trio_ws_worker_connections_open"] == {("0",): 0}  # alive again
        assert any("again" in record.getMessage() for record in caplog.records)


@settings(deadline=None, max_examples=40)
@given(
    requests=st.lists(
        st.one_of(
            st.binary(max_size=600),
            st.builds(
                lambda method, target, junk: f"{method} {target} HTTP/1.1\r\n".encode() + junk + b"\r\n\r\n",
                st.sampled_from(["GET", "HEAD", "POST", "PUT", "get", "BREW", ""]),
                st.sampled_from(["/metrics", "/metrics?x=1", "/", "*", "/%00", "metrics", "/" + "m" * 300]),
                st.binary(max_size=200),
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_metrics_port_answers_any_bytes_and_serves_on(requests: list[bytes]) -> None:
    """Whatever a client sends the metrics port, it answers with an HTTP status or closes,
    within a second, and the next scrape is served."""

    async def main() -> None:
        config = trio_ws.ServerConfig(handler=lambda ws: ws.wait_closed(), metrics=True, metrics_port=0)
        async with trio_ws.open_server(config, "127.0.0.1", 0) as server:
            assert server.metrics_port is not None
            for request in requests:
                async with await trio.open_tcp_stream("127.0.0.1", server.metrics_port) as stream:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(request)
                    with trio.move_on_after(0.1):  # an incomplete head waits for more: fine
                        with contextlib.suppress(trio.BrokenResourceError):
                            answer = await stream.receive_some(65536)
                            assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]
            status, text = await trio.to_thread.run_sync(
                get, f"http://127.0.0.1:{server.metrics_port}/metrics"
            )
            assert status == 200 and "trio_ws_connections_opened_total" in text

    trio.run(main)


close_codes = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]),
    st.integers(3000, 4999),
)


@given(
    flood=st.integers(0, 120),
    closes=st.lists(st.tuples(close_codes, st.sampled_from(["server", "client", "none"])), max_size=300),
)
def test_peers_cannot_grow_the_close_codes_counted_without_bound(
    flood: int, closes: list[tuple[int, str]]
) -> None:
    """Whatever codes peers close with (a flood of distinct ones first, then any), every
    close is counted once; the RFC's codes each under their own label; of the codes from
    3000 up, the first MAX_APPLICATION_CLOSE_CODES seen under their own, the rest under
    "other"."""
    closes = [(4999 - number, "client") for number in range(flood)] + closes
    counts = ServerStats()
    for code, by in closes:
        counts.closed(code, by, 0.0)
    figures = counts.server_snapshot(0)["trio_ws_closes_total"]
    assert sum(figures.values()) == len(closes)  # type: ignore[arg-type]
    first_seen = list(dict.fromkeys(code for code, _ in closes if code >= 3000))
    kept = set(first_seen[:MAX_APPLICATION_CLOSE_CODES])
    model: dict[tuple[str, ...], int] = {}
    for code, by in closes:
        key = (str(code) if code < 3000 or code in kept else "other", by)
        model[key] = model.get(key, 0) + 1
    assert figures == model
    assert (
        len({code for code, _ in figures if code != "other" and int(code) >= 3000})
        <= MAX_APPLICATION_CLOSE_CODES
    )


async def test_clients_closing_with_many_codes_get_a_bounded_set_of_series() -> None:
    """80 clients, each closing with a code of its own, through a real server: 50 series of
    their own, and the other 30 under "other"."""

    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    async with trio_ws.testing.open_in_memory_server(wait) as server:
        for number in range(80):
            async with server.connect("/") as ws:
                await ws.close(4000 + number, "bye")
        with trio.fail_after(5):
            while sum(server.server.counts.closes.values()) < 80:
                await trio.sleep(0.01)
        figures = server.server.stats()["trio_ws_closes_total"]
    assert figures[("other", "client")] == 80 - MAX_APPLICATION_CLOSE_CODES
    assert {code for code, _ in figures} == {str(4000 + n) for n in range(50)} | {"other"}
