"""Metrics in one process: each figure counts exactly the traffic driven (real sockets, real
clients, raw peers for what a client library would not do), `trio_ws.stats()` and `/metrics`
agree, and `/metrics` is served on the server's port or on a port of its own."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
import trio

import trio_ws
from trio_ws.counters import METRICS, HistogramValue, Snapshot, per_worker_name

from .conftest import RedisCluster, RedisServer
from .prometheus import get, sample, scrape


def figure(snapshot: Snapshot, name: str, *labels: str) -> Any:
    return snapshot.get(name, {}).get(tuple(labels), 0)


async def raw_upgrade(port: int, path: str = "/echo") -> trio.SocketStream:
    """A TCP connection upgraded by hand: a peer that then does what a test says."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream


async def raw_request(port: int, request: bytes) -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            answer += chunk
        return answer


router = trio_ws.Router()


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@router.route("/close")
async def close_after_one(ws: trio_ws.WebSocket) -> None:
    await ws.recv()
    await ws.close(4001, "enough")


async def secret(request: trio_ws.Request) -> trio_ws.Response | None:
    return trio_ws.Response(401, body="who?\n") if request.path_only == "/secret" else None


async def test_every_connection_figure_counts_the_traffic_driven() -> None:
    config = trio_ws.ServerConfig(handler=router, process_request=secret, metrics=True)
    async with trio_ws.open_server(config, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}"
        for _ in range(3):  # closed by the client: 1000
            async with trio_ws.connect(url + "/echo") as ws:
                for message in ["a", "bb", "ccc", "dddd", b"\x00" * 10, b"\x01" * 20]:
                    await ws.send(message)
                    assert await ws.recv() == message
        async with trio_ws.connect(url + "/close") as ws:  # closed by the server: 4001
            await ws.send("x")
            await ws.wait_closed()
        peer = await raw_upgrade(server.port)  # TCP dropped without a close frame: 1006
        await peer.aclose()
        for path in ("/secret", "/secret", "/nowhere"):  # 401, 401, the Router's 404
            with pytest.raises(trio_ws.InvalidHandshake):
                async with trio_ws.connect(url + path):
                    pass
        answer = await raw_request(server.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 426"), answer
        with trio.fail_after(5):
            while server.connections or server.counts.opened - sum(server.counts.closes.values()):
                await trio.sleep(0.01)

        expected: dict[tuple[str, ...], float] = {
            ("trio_ws_connections_opened_total",): 5,
            ("trio_ws_handshakes_total", "101"): 5,
            ("trio_ws_handshakes_total", "401"): 2,
            ("trio_ws_handshakes_total", "404"): 1,
            ("trio_ws_handshakes_total", "426"): 1,
            ("trio_ws_closes_total", "1000", "client"): 3,
            ("trio_ws_closes_total", "4001", "server"): 1,
            ("trio_ws_closes_total", "1006", "none"): 1,
            ("trio_ws_messages_received_total", "text"): 3 * 4 + 1,
            ("trio_ws_messages_received_total", "binary"): 3 * 2,
            ("trio_ws_received_bytes_total", "text"): 3 * 10 + 1,
            ("trio_ws_received_bytes_total", "binary"): 3 * 30,
            ("trio_ws_messages_sent_total", "text"): 3 * 4,
            ("trio_ws_messages_sent_total", "binary"): 3 * 2,
            ("trio_ws_sent_bytes_total", "binary"): 3 * 30,
            ("trio_ws_connections_open",): 0,
        }
        snapshot = trio_ws.stats()
        assert {key: figure(snapshot, *key) for key in expected} == expected
        assert figure(snapshot, "trio_ws_connection_duration_seconds").count == 5
        # /metrics says the same (and each gauge again for worker "0"), and is not counted itself.
        samples = await scrape(f"http://127.0.0.1:{server.port}/metrics")
        for key, value in expected.items():
            name, *labels = key
            spec = METRICS[name]
            names = dict(zip(spec.labels, labels, strict=True))
            assert sample(samples, name, **names) == value, key
            if spec.kind == "gauge":
                assert sample(samples, per_worker_name(name), worker="0", **names) == value, key
        assert sample(samples, "trio_ws_connection_duration_seconds_count") == 5
        assert sum(trio_ws.stats()["trio_ws_handshakes_total"].values()) == 9  # type: ignore[arg-type]


async def test_metrics_on_a_port_of_their_own() -> None:
    config = trio_ws.ServerConfig(handler=router, metrics=True, metrics_port=0)
    async with trio_ws.open_server(config, "127.0.0.1", 0) as server:
        assert server.metrics_port is not None and server.metrics_port != server.port
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            await ws.send("hello")
            await ws.recv()
        base = f"http://127.0.0.1:{server.metrics_port}"
        samples = await scrape(base + "/metrics")
        assert sample(samples, "trio_ws_messages_received_total", kind="text") == 1
        assert sample(samples, "trio_ws_connections_opened_total") == 1
        # On the server's own port, /metrics is a path like any other: the Router's 404.
        status, _ = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{server.port}/metrics")
        assert status == 404
        # The metrics port answers only GET (and HEAD) /metrics, and bad requests with 400.
        assert (await trio.to_thread.run_sync(get, base + "/other"))[0] == 404
        post = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        posted = await raw_request(server.metrics_port, post)
        assert posted.startswith(b"HTTP/1.1 405"), posted
        malformed = await raw_request(server.metrics_port, b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n")
        assert malformed.startswith(b"HTTP/1.1 400"), malformed
        # A head that never ends is refused past 16 KiB, not buffered on.
        endless = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000
        huge = await raw_request(server.metrics_port, endless)
        assert huge.startswith(b"HTTP/1.1 431"), huge[:100]
        # Keep-alive: two scrapes on one connection.
        async with await trio.open_tcp_stream("127.0.0.1", server.metrics_port) as stream:
            buffered = b""
            for _ in range(2):
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                while b"\r\n\r\n" not in buffered:
                    buffered += await stream.receive_some(65536)
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                assert head.startswith(b"HTTP/1.1 200"), head
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                while len(buffered) < length:
                    buffered += await stream.receive_some(65536)
                body, buffered = buffered[:length], buffered[length:]
                assert b"trio_ws_connections_opened_total 1.0" in body


async def test_keepalive_round_trips_and_failures_are_counted() -> None:
    config = trio_ws.ServerConfig(handler=router, ping_interval=0.05, ping_timeout=0.2)
    async with trio_ws.open_server(config, "127.0.0.1", 0) as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/echo", ping_interval=None) as ws:
            with trio.fail_after(5):
                while server.counts.ping_rtt.read().count < 3:
                    await trio.sleep(0.02)
            await ws.send("still here")
            await ws.recv()
        rtt = server.counts.ping_rtt.read()
        assert 0 < rtt.sum < 3 * 0.05 * 10  # round trips on loopback, far below the interval
        # A peer that never answers a ping: failed with 1011 once ping_timeout passes.
        peer = await raw_upgrade(server.port)
        with trio.fail_after(5):
            while server.counts.keepalive_failures == 0:
                await trio.sleep(0.02)
        await peer.aclose()
        with trio.fail_after(5):
            while server.connections:
                await trio.sleep(0.01)
        snapshot = server.stats()
        assert figure(snapshot, "trio_ws_keepalive_failures_total") == 1
        assert figure(snapshot, "trio_ws_closes_total", "1011", "server") == 1


async def test_backpressure_is_counted_send_waits_refusals_and_inbox_pauses() -> None:
    refused: list[int] = []
    waited = trio.Event()

    async def flood(ws: trio_ws.WebSocket) -> None:
        if ws.path == "/nowait":
            count = 0
            while ws.try_send_nowait(bytes(65536)):
                pass
            for _ in range(5):  # each refused: the connection is backed up
                count += not ws.try_send_nowait(b"more")
            refused.append(count)
            await ws.wait_closed()
        elif ws.path == "/send":
            with trio.move_on_after(0.3):
                while True:
                    await ws.send(bytes(65536))
            waited.set()
            await ws.wait_closed()
        else:  # /slow: takes its time before reading
            await trio.sleep(0.5)
            async for _ in ws:
                pass

    config = trio_ws.ServerConfig(handler=flood, max_queue=2, write_limit=2**16)
    async with trio_ws.open_server(config, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}"
        peer = await raw_upgrade(server.port, "/nowait")  # reads nothing
        with trio.fail_after(5):
            while not refused:
                await trio.sleep(0.01)
        await peer.aclose()
        peer = await raw_upgrade(server.port, "/send")
        with trio.fail_after(5):
            await waited.wait()
        await peer.aclose()
        async with trio_ws.connect(url + "/slow") as ws:
            for number in range(20):
                await ws.send(str(number))
        with trio.fail_after(5):
            while server.connections:
                await trio.sleep(0.01)
        snapshot = server.stats()
        assert refused == [5]
        assert figure(snapshot, "trio_ws_send_nowait_refusals_total") == 5 + 1  # and the loop's last
        assert 0.2 < figure(snapshot, "trio_ws_send_wait_seconds_total") < 1.0
        assert figure(snapshot, "trio_ws_inbox_pauses_total") >= 1


async def live(channel: trio_ws.PublicationChannel) -> None:
    """Once its forwarder made it live (a subscription with history starts held)."""
    with trio.fail_after(5):
        while channel.subscription.phase.value != "live":
            await trio.sleep(0.001)


async def test_hub_figures_publications_deliveries_drops_disconnects_resumes() -> None:
    async with trio_ws.open_hub(history_size=10) as hub:
        async with hub.open_channel("news", queue_size=2) as slow:
            await live(slow)
            for number in range(5):  # some in its channel and queue, the oldest of the rest dropped
                await hub.publish("news", str(number))
            position = hub.position("news")
            first_drops = slow.subscription.dropped
            assert first_drops > 0
            snapshot = hub.stats()
            assert figure(snapshot, "trio_ws_hub_subscriptions") == 1
            assert figure(snapshot, "trio_ws_hub_history_topics") == 1
            assert figure(snapshot, "trio_ws_hub_dropped_total", "drop_oldest") == first_drops
            async with hub.open_channel("news", since=trio_ws.StreamPosition(2, position.epoch)) as resumed:
                for expected in ("2", "3", "4"):  # after the second (offsets count from 1)
                    assert (await resumed.receive()).data == expected
                assert resumed.subscription.recovered
                await live(resumed)
            async with hub.open_channel("news", since=trio_ws.StreamPosition(0, "other")) as lost:
                assert lost.subscription.recovered is False
            async with hub.open_channel("news", queue_size=1, on_overflow="disconnect") as dropped:
                await live(dropped)
                more = 0
                while dropped.subscription.phase.value != "ended":  # until its queue overflows
                    await hub.publish("news", f"more {more}")
                    more += 1
                    assert more < 10
        snapshot = hub.stats()
    assert figure(snapshot, "trio_ws_hub_publications_total") == 5 + more
    # The slow channel took every publication (dropping its oldest), the last channel all
    # but the one that overflowed it.
    assert figure(snapshot, "trio_ws_hub_deliveries_total") == 5 + more + more - 1
    assert figure(snapshot, "trio_ws_hub_dropped_total", "drop_oldest") == first_drops + more
    assert figure(snapshot, "trio_ws_hub_overflow_disconnects_total") == 1
    assert figure(snapshot, "trio_ws_hub_resumes_total", "recovered") == 1
    assert figure(snapshot, "trio_ws_hub_resumes_total", "not_recovered") == 1
    replayed = figure(snapshot, "trio_ws_hub_replayed_publications")
    assert isinstance(replayed, HistogramValue) and (replayed.count, replayed.sum) == (1, 3)
    assert figure(snapshot, "trio_ws_hub_subscriptions") == 0


async def test_redis_figures_publishes_commands_outages_and_reconnects(redis_server: RedisServer) -> None:
    backend = trio_ws.RedisBackend(redis_server.url, timeout=1.0, health_check_interval=0.2)
    async with trio_ws.open_hub(backend, history_size=10) as hub:
        async with hub.open_channel("room") as channel:
            for number in range(3):
                await hub.publish("room", str(number))
            for _ in range(3):
                await channel.receive()
            snapshot = trio_ws.stats()
            assert figure(snapshot, "trio_ws_redis_publishes_total") == 3
            assert figure(snapshot, "trio_ws_redis_command_seconds").count >= 3  # the history appends
            assert figure(snapshot, "trio_ws_redis_outages_total") == 0
            redis_server.stop()
            await trio.sleep(0.5)
            redis_server.start()
            with trio.fail_after(15):
                while backend.reconnects < 2:  # the listener's and the publisher's
                    await trio.sleep(0.05)
            snapshot = trio_ws.stats()
            assert figure(snapshot, "trio_ws_redis_outages_total") == 2
            assert figure(snapshot, "trio_ws_redis_reconnects_total") == 2
            assert figure(snapshot, "trio_ws_redis_outage_seconds_total") > 2 * 0.4
            assert figure(snapshot, "trio_ws_redis_in_flight") == 0


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"metrics": 1}, TypeError),
        ({"metrics_port": 9100}, ValueError),  # without metrics=True
        ({"metrics": True, "metrics_port": -1}, ValueError),
        ({"metrics": True, "metrics_port": 65536}, ValueError),
        ({"metrics": True, "metrics_port": "9100"}, TypeError),
        ({"metrics": True, "metrics_port": True}, TypeError),
    ],
)
def test_bad_metrics_options_are_refused_when_built(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="metrics"):
        trio_ws.ServerConfig(handler=echo, **options)


def test_stats_is_empty_of_sources_that_ended() -> None:
    async def main() -> None:
        async with trio_ws.open_server(echo, "127.0.0.1", 0):
            assert "trio_ws_connections_open" in trio_ws.stats()
        assert "trio_ws_connections_open" not in trio_ws.stats()

    trio.run(main)


async def test_a_cluster_backend_sums_its_primaries_figures(redis_cluster: RedisCluster) -> None:
    """Topics on every primary: the backend's figures are the sum of its per-primary ones."""
    backend = trio_ws.RedisClusterBackend(redis_cluster.url)
    async with trio_ws.open_hub(backend, history_size=10) as hub:
        topics = [f"topic-{number}" for number in range(20)]  # spread over the slots
        for topic in topics:
            await hub.publish(topic, "x")
        await backend.flush()
        snapshot = trio_ws.stats()
        assert figure(snapshot, "trio_ws_redis_publishes_total") == len(topics)
        assert figure(snapshot, "trio_ws_redis_undelivered_total") == 0
        assert figure(snapshot, "trio_ws_redis_command_seconds").count >= len(topics)
        assert len(backend.primaries) > 1  # the sum did add several


async def test_an_in_memory_server_counts_and_answers_metrics_too() -> None:
    config = trio_ws.ServerConfig(handler=router, metrics=True)
    async with trio_ws.testing.open_in_memory_server(config) as server:
        async with server.connect("/echo") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
        assert figure(trio_ws.stats(), "trio_ws_messages_received_total", "text") == 1
        response = await server.request("/metrics")
        assert response.status == 200
        assert 'trio_ws_messages_received_total{kind="text"} 1.0' in response.body.decode()
    assert "trio_ws_messages_received_total" not in trio_ws.stats()


async def test_the_metrics_port_bounds_its_connections_and_their_idle_time() -> None:
    """Hostile clients that connect and send nothing, or one byte at a time: the port holds
    at most `max_scrapers` of them, each for `idle_timeout` at most, then serves again."""
    from trio_ws.metrics import serve_metrics

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_metrics(
                "127.0.0.1", 0, max_scrapers=4, idle_timeout=0.5, task_status=task_status
            )
        )
        idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(4)]
        await trio.sleep(0.1)
        turned_away = await trio.open_tcp_stream("127.0.0.1", port)  # a fifth: closed at once
        with trio.fail_after(0.3):  # well before the idle timeout would close it
            assert await turned_away.receive_some(100) == b""
        trickle = idle[0]
        started = trio.current_time()
        with trio.fail_after(2):  # one byte every 0.1 s does not stretch the 0.5 s deadline
            with contextlib.suppress(trio.BrokenResourceError):
                for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":
                    await trickle.send_all(bytes([byte]))
                    await trio.sleep(0.1)
            for stream in idle:
                with contextlib.suppress(trio.BrokenResourceError):
                    assert await stream.receive_some(100) == b""  # closed by the server
        assert trio.current_time() - started < 1.0
        status, text = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "trio_ws_connections_opened_total" in text
        for stream in [*idle, turned_away]:
            await stream.aclose()
        nursery.cancel_scope.cancel()
