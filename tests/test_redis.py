"""The Redis backend with a real redis-server: across processes, and across a Redis restart."""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import trio_ws

from .conftest import ROOT, RedisServer, free_port, readline_within
from .relay import BlackHoleRelay
from .traffic import Delivery

pytestmark = pytest.mark.timeout(600)  # worker processes and a real redis-server

# Every password any test here puts in a Redis URL: none may show in a log or a message.
PASSWORDS = ("alicepw", "defaultpw", "s3cret-n0pe")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_password_in_any_log_record() -> Iterator[None]:
    """Every record every test here logs, at every level and from every logger, with its
    traceback, is checked for the passwords."""
    handler, root = _Records(), logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    for record in handler.records:
        traceback = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        text = record.getMessage() + traceback
        leaked = [password for password in PASSWORDS if password in text]
        assert not leaked, f"{leaked} logged by {record.name}: {text}"


class Workers:
    """`python -m trio_ws serve examples.chat:router --workers 2 --redis URL`."""

    def __init__(
        self,
        redis_url: str,
        workers: int = 2,
        target: str = "examples.chat:router",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trio_ws", "serve", target, "--port", str(self.port),
             "--workers", str(workers), "--redis", redis_url, "--graceful-timeout", "0.5", *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the workers' lines must not interleave
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.pids = set()
        for _ in range(workers):
            line = readline_within(self.proc.stdout, 30)
            assert "listening on" in line, (
                line,
                self.proc.stderr.read() if self.proc.poll() is not None else "",
            )  # type: ignore[union-attr]
            self.pids.add(int(line.split()[1]))

    def url(self, room: str, name: str) -> str:
        return f"ws://127.0.0.1:{self.port}/chat/{room}?name={name}"

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[Workers]:
    running = Workers(redis_server.url)
    yield running
    running.stop()


@asynccontextmanager
async def clients_on_every_worker(
    workers: Workers, room: str
) -> AsyncIterator[dict[int, list[trio_ws.WebSocket]]]:
    """Connect until each worker process serves at least two clients; group them by worker."""
    by_worker: dict[int, list[trio_ws.WebSocket]] = {pid: [] for pid in workers.pids}
    async with AsyncExitStack() as stack:
        for n in range(60):
            ws = await stack.enter_async_context(trio_ws.connect(workers.url(room, f"c{n}")))
            welcome = json.loads(str(await ws.recv()))
            by_worker[welcome["worker"]].append(ws)
            if all(len(group) >= 2 for group in by_worker.values()):
                break
        assert all(by_worker.values()), "SO_REUSEPORT never sent a client to one of the workers"
        yield by_worker


async def next_message(ws: trio_ws.WebSocket) -> dict[str, Any]:
    """The next chat message, skipping join and leave announcements."""
    while True:
        event = json.loads(str(await ws.recv()))
        if event["type"] == "message":
            return event  # type: ignore[no-any-return]


async def test_a_publish_in_either_process_reaches_subscribers_of_both(workers: Workers) -> None:
    async with clients_on_every_worker(workers, "lobby") as by_worker:
        everyone = [ws for group in by_worker.values() for ws in group]
        with trio.fail_after(20):
            for pid, group in by_worker.items():
                await group[0].send(f"hello from worker {pid}")
                for ws in everyone:
                    assert (await next_message(ws))["text"] == f"hello from worker {pid}"
    returncode, _ = workers.stop()
    assert returncode == 0


async def test_other_rooms_do_not_hear_it(workers: Workers) -> None:
    async with (
        trio_ws.connect(workers.url("kitchen", "k")) as kitchen,
        clients_on_every_worker(workers, "garden") as by_worker,
    ):
        await kitchen.recv()  # welcome
        first = next(iter(by_worker.values()))[0]
        await first.send("only for the garden")
        await next_message(first)
        with trio.move_on_after(0.5):
            event = await next_message(kitchen)
            raise AssertionError(f"the kitchen heard {event}")


async def test_redis_restart_mid_test(workers: Workers, redis_server: RedisServer) -> None:
    async with clients_on_every_worker(workers, "ops") as by_worker:
        group_a, group_b = by_worker.values()
        everyone = group_a + group_b
        redis_server.stop()
        # Redis is gone: local subscribers are still served, and no worker crashes.
        await group_a[0].send("during the outage")
        for ws in group_a:
            assert (await next_message(ws))["text"] == "during the outage"
        redis_server.start()
        # Recovery: probe until a publish crosses processes both ways again.
        with trio.fail_after(30):
            for sender, receiver in ((group_a[0], group_b[0]), (group_b[0], group_a[0])):
                while True:
                    await sender.send("probe")
                    with trio.move_on_after(0.5):
                        while (await next_message(receiver))["text"] != "probe":
                            pass
                        break
            for ws in everyone:  # drain the probes
                with trio.move_on_after(0.3):
                    while True:
                        await next_message(ws)
        # After recovery, publishes from either process reach everyone.
        with trio.fail_after(20):
            for sender in (group_a[0], group_b[0]):
                await sender.send(f"after recovery from {sender.local_address[1]}")
                for ws in everyone:
                    assert (await next_message(ws))[
                        "text"
                    ] == f"after recovery from {sender.local_address[1]}"
    assert workers.proc.poll() is None, "a worker process exited"
    returncode, err = workers.stop()
    assert returncode == 0
    assert "could not publish to Redis" in err  # the outage was logged


async def test_redis_channel_exists_only_while_someone_subscribes(redis_server: RedisServer) -> None:
    async def hold(ws: trio_ws.WebSocket) -> None:
        async with trio_ws.current_hub().subscribe(ws, "room-1"):
            await ws.wait_closed()

    async with trio_ws.open_hub(backend=trio_ws.RedisBackend(redis_server.url)):
        async with trio_ws.open_server(hold, "127.0.0.1", 0) as server:
            assert b"room-1" not in redis_server.command("PUBSUB", "CHANNELS")
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/"):
                with trio.fail_after(5):
                    while b"trio_ws:room-1" not in redis_server.command("PUBSUB", "CHANNELS"):
                        await trio.sleep(0.01)
            with trio.fail_after(5):
                while b"trio_ws:room-1" in redis_server.command("PUBSUB", "CHANNELS"):
                    await trio.sleep(0.01)


async def test_binary_and_text_cross_processes_intact(redis_server: RedisServer) -> None:
    received: list[trio_ws.Message] = []

    async def listen(ws: trio_ws.WebSocket) -> None:
        async with trio_ws.current_hub().subscribe(ws, "t"):
            await ws.wait_closed()

    backend_a, backend_b = trio_ws.RedisBackend(redis_server.url), trio_ws.RedisBackend(redis_server.url)
    async with trio_ws.open_hub(backend=backend_a) as hub_a, trio_ws.open_hub(backend=backend_b):
        async with trio_ws.open_server(listen, "127.0.0.1", 0) as server_b:  # served under hub_b
            async with trio_ws.connect(f"ws://127.0.0.1:{server_b.port}/") as ws:
                with trio.fail_after(5):
                    while b"trio_ws:t" not in redis_server.command("PUBSUB", "CHANNELS"):
                        await trio.sleep(0.01)
                assert await hub_a.publish("t", "tëxt") == 0  # no local subscriber in a
                await hub_a.publish("t", b"\x00\xffbinary")
                received += [await ws.recv(), await ws.recv()]
    assert received == ["tëxt", b"\x00\xffbinary"]


async def test_unreachable_redis_at_start_is_a_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConnectionError, match=f"cannot reach Redis at {url}"):
        async with trio_ws.open_hub(backend=trio_ws.RedisBackend(url)):
            pass
    command = [
        sys.executable,
        "-m",
        "trio_ws",
        "serve",
        "examples.chat:router",
        "--port",
        "0",
        "--redis",
        url,
    ]
    proc = await trio.run_process(command, cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 1
    assert f"cannot reach Redis at {url}" in proc.stderr.decode()


async def test_sigterm_to_the_runner_closes_every_worker_gracefully(workers: Workers) -> None:
    """SIGTERM drains: the chat's handlers never end on their own, so once the graceful
    timeout (0.5 s here) is over every client gets 1001, and the runner exits 0."""
    async with clients_on_every_worker(workers, "bye") as by_worker:
        workers.proc.send_signal(signal.SIGTERM)
        for group in by_worker.values():
            for ws in group:
                with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosedOK) as info:
                    while True:
                        await ws.recv()
                assert info.value.code == 1001
    assert await trio.to_thread.run_sync(workers.proc.wait, 20) == 0


def test_redis_url_is_checked() -> None:
    with pytest.raises(ValueError, match="redis://"):
        trio_ws.RedisBackend("http://127.0.0.1:6379")


def publish_raw(redis: RedisServer, channel: bytes, payload: bytes) -> bytes:
    """PUBLISH from a plain Redis client, as anyone with access to that Redis can."""
    import socket

    parts = [b"PUBLISH", channel, payload]
    command = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(64)


@asynccontextmanager
async def two_hubs_and_a_subscriber(
    url: str, topic: str = "steady", **options: Any
) -> AsyncIterator[tuple[trio_ws.Hub, Any, Any, trio_ws.WebSocket]]:
    """Hub A (no subscriber) and hub B serving one client subscribed to `topic`, both
    through RedisBackend(url): (hub A, backend A, backend B, the client)."""

    async def listen(ws: trio_ws.WebSocket) -> None:
        async with trio_ws.current_hub().subscribe(ws, topic):
            await ws.send("subscribed")  # Redis confirmed the subscription
            await ws.wait_closed()

    backend_a, backend_b = trio_ws.RedisBackend(url, **options), trio_ws.RedisBackend(url, **options)
    async with trio_ws.open_hub(backend=backend_a) as hub_a, trio_ws.open_hub(backend=backend_b):
        async with trio_ws.open_server(listen, "127.0.0.1", 0) as server_b:  # served under hub B
            async with trio_ws.connect(f"ws://127.0.0.1:{server_b.port}/") as ws:
                with trio.fail_after(5):
                    assert await ws.recv() == "subscribed"
                yield hub_a, backend_a, backend_b, ws


async def test_hostile_publishes_on_our_channel_are_skipped_and_counted(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Any Redis client can publish on a trio_ws: channel. Malformed payloads are logged,
    counted and skipped; the hub, the server and the next good message are unaffected."""
    async with two_hubs_and_a_subscriber(redis_server.url, "room") as (hub_a, _, backend_b, ws):
        number = (1).to_bytes(8, "big")
        hostile = [
            b"0123456789abcdef" + b"t" + number + b"\xff\xfe not UTF-8",
            b"short",
            b"",
            b"0123456789abcdef" + b"t" + b"1234567",  # no room for the number
            b"0123456789abcdef" + b"z" + number + b"an unknown kind",
        ]
        for payload in hostile:
            assert publish_raw(redis_server, b"trio_ws:room", payload).startswith(b":1")
        await hub_a.publish("room", "still delivered")
        with trio.fail_after(5):
            received = await ws.recv()
        assert backend_b.rejected == len(hostile)
    assert received == "still delivered"
    assert "not valid UTF-8" in caplog.text


@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize("role", ["server", "client"])
async def test_a_reused_buffer_and_a_released_view_are_captured_at_publish(
    role: str, compression: str | None
) -> None:
    """The hub queues for a slow subscriber; what it queued must be the message as it was
    when published, on every kind of connection: uncompressed, compressed (which frames
    per connection with context takeover) and client-role (which masks per connection),
    and after the caller's memoryview was released."""
    # 16 MB that does not compress: more than the socket buffers hold, so most of it waits
    # in the hub's queue while the peer reads nothing.
    size, count = 400_000, 40
    sent = [os.urandom(size) for _ in range(count)]
    got: list[trio_ws.Message] = []
    async with trio_ws.open_hub(queue_size=count + 10, queue_bytes=2 * count * size) as hub:
        subscriber: trio.MemorySendChannel[trio_ws.WebSocket]
        subscriber, subscribers = trio.open_memory_channel(1)
        read_now = trio.Event()

        async def peer(ws: trio_ws.WebSocket) -> None:
            """The server side: the subscriber, or the slow reader of a client subscriber."""
            if role == "server":
                async with hub.subscribe(ws, "t"):
                    await subscriber.send(ws)
                    await ws.wait_closed()
            else:
                await read_now.wait()
                got.extend([await ws.recv() for _ in range(count)])
                await ws.close()

        options = {"write_limit": 2**16, "max_size": None, "compression": compression}
        async with trio_ws.open_server(peer, "127.0.0.1", 0, **options) as server:
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/", **options) as client:
                async with AsyncExitStack() as stack:
                    if role == "client":
                        await stack.enter_async_context(hub.subscribe(client, "t"))
                    else:
                        await subscribers.receive()
                    buffer = bytearray(size)
                    for i in range(count):  # the peer reads nothing yet: most of these queue up
                        buffer[:] = sent[i]
                        if i % 2:
                            with memoryview(buffer) as view:
                                await hub.publish("t", view)
                        else:
                            await hub.publish("t", buffer)
                    buffer[:] = b"\xee" * size
                    with trio.fail_after(20):
                        if role == "client":
                            read_now.set()
                            await client.wait_closed()
                        else:
                            got.extend([await client.recv() for _ in range(count)])
    assert got == sent


async def cross_process_round_trip(url: str, **options: Any) -> trio_ws.Message:
    """A message published under one hub reaches a subscriber served under another,
    both through RedisBackend(url): proof that both logged in and reached the same Redis."""
    async with two_hubs_and_a_subscriber(url, "creds", **options) as (hub_a, _, _, ws):
        await hub_a.publish("creds", "through Redis")
        with trio.fail_after(5):
            return await ws.recv()


ACL = ("--user", "alice", "on", ">alicepw", "~*", "&*", "+@all", "--requirepass", "defaultpw")


@pytest.fixture
def acl_redis() -> Iterator[RedisServer]:
    server = RedisServer(*ACL)
    server.start()
    yield server
    server.stop()


async def test_acl_user_and_default_password_log_in(acl_redis: RedisServer) -> None:
    port = acl_redis.port
    assert await cross_process_round_trip(f"redis://alice:alicepw@127.0.0.1:{port}/0") == "through Redis"
    assert await cross_process_round_trip(f"redis://:defaultpw@127.0.0.1:{port}") == "through Redis"


async def test_a_refused_login_says_why_and_never_shows_the_password(
    acl_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://alice:s3cret-n0pe@127.0.0.1:{acl_redis.port}/0"
    with pytest.raises(ConnectionError) as info:
        async with trio_ws.open_hub(backend=trio_ws.RedisBackend(url)):
            pass
    assert "WRONGPASS" in str(info.value) and "alice:***@" in str(info.value)
    assert "s3cret-n0pe" not in str(info.value) + caplog.text
    assert trio_ws.RedisBackend(url).url == f"redis://alice:***@127.0.0.1:{acl_redis.port}/0"


async def test_outage_logs_never_show_the_password(
    acl_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    backend = trio_ws.RedisBackend(f"redis://alice:alicepw@127.0.0.1:{acl_redis.port}/0", timeout=0.5)
    async with trio_ws.open_hub(backend=backend) as hub:
        acl_redis.stop()
        await hub.publish("x", "nobody hears this")  # the publisher finds Redis gone
        with trio.fail_after(5):
            while "lost the Redis connection" not in caplog.text:
                await trio.sleep(0.05)
    assert "alice:***@" in caplog.text and "alicepw" not in caplog.text


async def test_the_db_number_is_selected(redis_server: RedisServer) -> None:
    async with trio_ws.open_hub(backend=trio_ws.RedisBackend(redis_server.url.replace("/0", "/3"))):
        clients = redis_server.command("CLIENT", "LIST").decode()
    assert clients.count(" db=3 ") == 2, clients  # the listener and the publisher


async def test_rediss_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    certificate.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = RedisServer(tls_dir=tmp_path)
    server.start()
    try:
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        assert await cross_process_round_trip(server.url, ssl_context=trusted) == "through Redis"
        with pytest.raises(ConnectionError, match="rediss://"):  # the system CAs do not know it
            async with trio_ws.open_hub(backend=trio_ws.RedisBackend(server.url)):
                pass
    finally:
        server.stop()


def test_redis_urls_are_checked_and_redacted() -> None:
    for db in ["not-a-db", "\u00b2"]:  # "²" passes str.isdigit()
        with pytest.raises(ValueError, match=r"redis://:\*\*\*@h"):
            trio_ws.RedisBackend(f"redis://:pw@h/{db}")
    with pytest.raises(ValueError, match="ssl_context is for rediss"):
        trio_ws.RedisBackend("redis://h", ssl_context=ssl.create_default_context())


async def test_a_fast_publisher_reconnects_on_time_after_a_redis_restart(redis_server: RedisServer) -> None:
    """Publishing every 100 ms (faster than any back-off) must not postpone reconnection:
    after Redis restarts, publishes reach the other process again within seconds."""
    async with two_hubs_and_a_subscriber(redis_server.url, timeout=0.5) as (hub_a, backend_a, _, ws):
        sent = 0

        async def publish_steadily() -> None:
            nonlocal sent
            while True:
                await hub_a.publish("steady", str(sent))
                sent += 1
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_steadily)
            await trio.sleep(0.5)
            redis_server.stop()
            await trio.sleep(1)
            restarted_at = sent
            await trio.to_thread.run_sync(redis_server.start)
            back = trio.current_time()
            with trio.fail_after(10):
                while int(await ws.recv()) <= restarted_at:
                    pass
            recovery = trio.current_time() - back
            nursery.cancel_scope.cancel()
    print(f"publishes reached the other process {recovery:.2f} s after Redis was back")
    assert recovery < 6  # the listener's back-off (at most max_backoff=5 s) dominates
    assert backend_a.undelivered > 0  # the outage was real


async def test_a_publish_on_a_connection_redis_closed_for_idleness_is_retried() -> None:
    """`timeout 1` (a common managed-Redis setting) closes the idle publisher between
    publishes; each publish must still arrive, none counted as undelivered."""
    server = RedisServer("--timeout", "1")
    server.start()
    try:
        async with two_hubs_and_a_subscriber(server.url) as (hub_a, backend_a, _, ws):
            for i in range(3):
                await hub_a.publish("steady", f"m{i}")
                with trio.fail_after(5):
                    assert await ws.recv() == f"m{i}"
                await trio.sleep(2.5)  # idle past Redis's timeout (in whole seconds): it closes the publisher
            assert backend_a.undelivered == 0
        info = server.command("INFO", "stats").decode()
        # 4 connections to begin with (2 backends), this one, and the publisher's 2 reconnections.
        assert int(info.split("total_connections_received:")[1].split()[0]) >= 4 + 1 + 2
    finally:
        server.stop()


async def steady_traffic(
    hub: trio_ws.Hub, ws: trio_ws.WebSocket, delivery: Delivery, *, rate: float = 50, topic: str = "steady"
) -> None:
    """Publish numbered messages on `hub` at `rate` a second; record what `ws` receives."""

    async def receive() -> None:
        async for message in ws:
            delivery.arrive(int(message), trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        while True:
            await hub.publish(topic, str(delivery.send(trio.current_time())))
            await trio.sleep(1 / rate)


async def test_a_black_holed_connection_is_found_out_by_the_health_check(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay between the processes and Redis stops forwarding without FIN or RST, under
    50 publishes a second. The health check finds both connections dead, new ones are made,
    and delivery resumes within the health check interval plus 1 s; what was lost in the
    meantime is counted, and nothing is lost before or after."""
    interval = 1.0
    delivery = Delivery()
    async with trio.open_nursery() as relay_nursery:
        relay = BlackHoleRelay(redis_server.port)
        await relay_nursery.start(relay.run)
        url = f"redis://127.0.0.1:{relay.port}/0"
        options = dict(health_check_interval=interval, timeout=0.5)
        async with two_hubs_and_a_subscriber(url, **options) as (hub_a, backend_a, backend_b, ws):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(steady_traffic, hub_a, ws, delivery)
                await trio.sleep(1)
                relay.black_hole()
                black_hole_at = trio.current_time()
                await trio.sleep(interval + 2.5)
                nursery.cancel_scope.cancel()
            with trio.move_on_after(1):  # the last messages in flight
                async for message in ws:
                    delivery.arrive(int(message), trio.current_time())
        relay_nursery.cancel_scope.cancel()
    recovery = delivery.recovery_after(black_hole_at, black_hole_at + interval + 2.5)
    lost, counted = len(delivery.lost()), backend_a.undelivered + backend_b.missed
    print(f"black hole: delivery resumed after {recovery:.2f} s; {lost} lost, {counted} counted")
    assert recovery < interval + 1
    assert delivery.lost_outside([(black_hole_at - 0.1, black_hole_at + recovery)]) == []
    assert 0 < lost <= counted <= lost + 1  # one publish in flight may be counted on both sides
    assert delivery.duplicates == delivery.out_of_order == 0
    assert "no answer to a PING" in caplog.text


def forged(origin: bytes, number: int, text: str) -> bytes:
    """A payload in the backend's own form: origin, kind, number, message."""
    return origin + b"t" + number.to_bytes(8, "big") + text.encode()


async def test_oversized_messages_are_neither_published_nor_taken_from_redis(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """max_message_size bounds what a process sends to Redis and what it takes from it:
    an oversized message in Redis is skipped and counted whether it arrives whole in one
    read or would have to be buffered, and the listener goes on."""
    limit = 100_000
    async with two_hubs_and_a_subscriber(redis_server.url, max_message_size=limit) as (
        hub_a,
        backend_a,
        backend_b,
        ws,
    ):
        await hub_a.publish("steady", "x" * (limit + 1))  # too large to leave this process
        assert backend_a.undelivered == 1
        channel = b"trio_ws:steady"
        publish_raw(redis_server, channel, forged(b"f" * 16, 1, "y" * (limit + 1)))  # arrives whole
        publish_raw(redis_server, channel, forged(b"f" * 16, 2, "z" * 20_000_000))  # buffered: cut short
        with trio.fail_after(10):
            while backend_b.rejected < 2:
                await trio.sleep(0.01)
            while True:  # the listener reconnected: a probe gets through again
                await hub_a.publish("steady", "probe")
                with trio.move_on_after(0.3):
                    assert await ws.recv() == "probe"
                    break
    assert caplog.text.count("larger than max_message_size") == 2
    assert "was not delivered" in caplog.text and "over max_message_size" in caplog.text
    assert "could not publish" not in caplog.text  # not an outage: Redis was there all along


async def test_a_publish_redis_refuses_is_no_outage_and_the_next_outage_is_still_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis answers every PUBLISH with an error here (an ACL without it, as a cluster node
    answers MOVED while a slot moves): each is counted and logged as not delivered, and is
    no outage of the connection. So when Redis then goes away, that outage is logged, and so
    is its end (before, the first refusal opened an "outage" that no reconnection closed,
    and the real one went unlogged)."""
    redis = RedisServer("--user", "default", "on", "nopass", "~*", "&*", "+@all", "-publish", "-spublish")
    redis.start()
    try:
        backend = trio_ws.RedisBackend(redis.url, max_backoff=0.2)
        async with trio_ws.open_hub(backend=backend) as hub:
            for _ in range(3):
                await hub.publish("t", "refused")
            await backend.flush()
            assert backend.undelivered == 3
            assert "NOPERM" in caplog.text and "was not delivered" in caplog.text
            assert "could not publish" not in caplog.text
            redis.kill()
            with trio.fail_after(5):
                while "could not publish to Redis" not in caplog.text:
                    await hub.publish("t", "during the outage")
                    await trio.sleep(0.05)
            redis.start()
            with trio.fail_after(10):
                while "publishing to Redis at" not in caplog.text:
                    await hub.publish("t", "after it")
                    await trio.sleep(0.05)
    finally:
        redis.stop()


async def test_a_receiver_counts_gaps_and_drops_duplicates(redis_server: RedisServer) -> None:
    """Publishes are numbered per topic: a repeated number (a publish retried after Redis
    took it) is dropped, a jump is counted in `missed`."""
    async with two_hubs_and_a_subscriber(redis_server.url) as (_, _, backend_b, ws):
        origin = b"0123456789abcdef"
        for number, text in [(1, "one"), (1, "one again"), (2, "two"), (5, "five")]:
            publish_raw(redis_server, b"trio_ws:steady", forged(origin, number, text))
        with trio.fail_after(5):
            received = [await ws.recv() for _ in range(3)]
        assert received == ["one", "two", "five"]
        assert backend_b.missed == 2


async def test_no_error_from_the_backend_shows_the_password(acl_redis: RedisServer) -> None:
    """Each way of failing, with a password in the URL: the whole exception chain is free
    of it (the log records are checked by the autouse fixture)."""
    import traceback

    port = acl_redis.port
    failing = {
        "wrong password": f"redis://alice:s3cret-n0pe@127.0.0.1:{port}/0",
        "nobody listening": f"redis://alice:alicepw@127.0.0.1:{free_port()}/0",
        "TLS to a plain server": f"rediss://:defaultpw@127.0.0.1:{port}/0",
    }
    for why, url in failing.items():
        with pytest.raises(ConnectionError) as info:
            async with trio_ws.open_hub(backend=trio_ws.RedisBackend(url, timeout=1)):
                pass
        chain = "".join(traceback.format_exception(info.value))
        assert ":***@" in str(info.value), why
        assert not [password for password in PASSWORDS if password in chain], (why, chain)
    for bad in [f"redis://:defaultpw@127.0.0.1:{port}/nodb", "redis://:defaultpw@127.0.0.1:port"]:
        with pytest.raises(ValueError) as value_error:
            trio_ws.RedisBackend(bad)
        assert "defaultpw" not in "".join(traceback.format_exception(value_error.value))


async def test_the_cli_keeps_the_password_off_command_lines_and_stderr(acl_redis: RedisServer) -> None:
    """`serve --workers 2 --redis URL`: the workers get the URL through the environment
    (ps shows every command line to every user), and their logs redact it, outage included."""
    workers = Workers(f"redis://alice:alicepw@127.0.0.1:{acl_redis.port}/0")
    try:
        for pid in workers.pids:
            command_line = await trio.Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"alicepw" not in command_line and b"--redis" not in command_line
        async with clients_on_every_worker(workers, "secret") as by_worker:
            group_a, group_b = by_worker.values()
            await group_a[0].send("across, logged in as alice")
            with trio.fail_after(10):
                assert (await next_message(group_b[0]))["text"] == "across, logged in as alice"
                assert (await next_message(group_a[0]))["text"] == "across, logged in as alice"
            acl_redis.stop()
            await group_a[0].send("during the outage")  # logged: could not publish to Redis at ...
            with trio.fail_after(10):
                assert (await next_message(group_a[0]))["text"] == "during the outage"
            await trio.sleep(0.5)
    finally:
        _, err = workers.stop()
    assert "could not publish to Redis at redis://alice:***@" in err
    assert not [password for password in PASSWORDS if password in err], err


def test_backend_options_are_checked() -> None:
    for options, named in [
        ({"timeout": 0}, "timeout"),
        ({"health_check_interval": -1}, "health_check_interval"),
        ({"max_backoff": 0.01}, "max_backoff"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"max_in_flight": 0}, "max_in_flight"),
    ]:
        with pytest.raises(ValueError, match=named):
            trio_ws.RedisBackend("redis://127.0.0.1", **options)


async def test_max_backoff_bounds_the_wait_after_a_long_outage(redis_server: RedisServer) -> None:
    """After 3 s without Redis, the next attempt is at most max_backoff away: with 0.2 s,
    publishes cross again within half a second of Redis being back."""
    async with two_hubs_and_a_subscriber(redis_server.url, max_backoff=0.2) as (hub_a, _, _, ws):
        redis_server.stop()
        for _ in range(30):  # the publisher and the listener find Redis gone, and keep trying
            await hub_a.publish("steady", "lost")
            await trio.sleep(0.1)
        await trio.to_thread.run_sync(redis_server.start)
        back = trio.current_time()
        with trio.fail_after(5):
            while True:
                await hub_a.publish("steady", "probe")
                with trio.move_on_after(0.05):
                    if await ws.recv() == "probe":
                        break
        recovery = trio.current_time() - back
    assert recovery < 0.5, recovery


async def test_publishes_do_not_wait_for_answers_and_a_full_pipeline_waits_for_room(
    redis_server: RedisServer,
) -> None:
    """Redis pauses writes (CLIENT PAUSE) for 0.5 s. 100 publishes (max_in_flight) return at
    once, without waiting for their answers; the 101st waits for room, and cancelled there
    it is counted in `undelivered`. After the pause the 100 arrive in order, then the next."""
    async with two_hubs_and_a_subscriber(redis_server.url, max_in_flight=100) as (hub_a, backend_a, _, ws):
        assert redis_server.command("CLIENT", "PAUSE", "500", "WRITE").startswith(b"+OK")
        with trio.fail_after(0.2):
            for i in range(100):
                await hub_a.publish("steady", f"m{i}")
        with trio.move_on_after(0.1) as waited:
            await hub_a.publish("steady", "cancelled while the pipeline is full")
        assert waited.cancelled_caught
        assert backend_a.undelivered == 1
        for i in range(3):
            await hub_a.publish("steady", f"after {i}")
        with trio.fail_after(5):
            received = [await ws.recv() for _ in range(103)]
        assert received == [f"m{i}" for i in range(100)] + [f"after {i}" for i in range(3)]
        assert backend_a.undelivered == 1
