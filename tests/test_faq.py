"""Every example of docs/faq.md (examples/faq/) runs, and does what its answer says."""

from __future__ import annotations

import importlib.util
import logging
import signal
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

import pytest
import trio

import trio_ws
from trio_ws.testing import connect_in_memory, open_in_memory_server

from .conftest import ROOT, RawClient, readline_within, ws_url
from .test_handshake import http_exchange

FAQ = ROOT / "examples" / "faq"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"faq_{name}", FAQ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested_and_answered_in_the_faq() -> None:
    source = (ROOT / "tests" / "test_faq.py").read_text()
    faq = (ROOT / "docs" / "faq.md").read_text()
    for example in sorted(FAQ.glob("*.py")):
        assert f'load("{example.stem}")' in source or f'"{example.name}"' in source, example.name
        assert f"examples/faq/{example.name}" in faq, example.name


async def test_premature_close() -> None:
    faq = load("premature_close")
    async with connect_in_memory(faq.handler) as ws:  # the real handshake and protocol, no socket
        assert [await ws.recv() for _ in range(3)] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
        with pytest.raises(trio_ws.ConnectionClosedOK):
            await ws.recv()


async def test_loop_over_messages() -> None:
    faq = load("loop_over_messages")
    async with connect_in_memory(faq.handler_one_message) as ws:
        await ws.send("one")
        assert await ws.recv() == "one"
        with pytest.raises(trio_ws.ConnectionClosedOK):
            await ws.recv()  # the handler returned: closed after one message
    async with connect_in_memory(faq.handler) as ws:
        for n in range(5):
            await ws.send(f"m{n}")
            assert await ws.recv() == f"m{n}"


async def test_blocking_calls_in_threads_serve_clients_concurrently() -> None:
    faq = load("blocking")
    clients = 5
    async with trio_ws.open_server(faq.handler, "127.0.0.1", 0) as server:

        async def client(n: int) -> None:
            async with trio_ws.connect(ws_url(server)) as ws:
                await ws.send(f"c{n}")
                assert await ws.recv() == f"C{n}"

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for n in range(clients):
                nursery.start_soon(client, n)
        elapsed = time.monotonic() - started
    assert elapsed < 0.2 * clients / 2, f"{elapsed:.2f}s: the blocking calls ran one after another"


async def test_firehose_does_not_starve_other_connections() -> None:
    faq = load("firehose")
    async with (
        trio_ws.open_server(faq.router, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server, "/firehose")) as hose,
        trio_ws.connect(ws_url(server, "/echo")) as echo,
    ):
        events = 0
        round_trips = []
        async with trio.open_nursery() as nursery:

            async def drink() -> None:
                nonlocal events
                while True:
                    await hose.recv()
                    events += 1

            nursery.start_soon(drink)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                started = time.monotonic()
                await echo.send(f"ping {len(round_trips)}")
                assert await echo.recv() == f"ping {len(round_trips)}"
                round_trips.append(time.monotonic() - started)
            nursery.cancel_scope.cancel()
    # Within the same half second, both connections made progress: neither starved.
    assert events > 1000, f"the firehose delivered only {events} events"
    assert len(round_trips) > 100, f"only {len(round_trips)} echo round trips"
    assert sorted(round_trips)[len(round_trips) // 2] < 0.02, round_trips
    assert max(round_trips) < 0.25, round_trips


async def test_broadcast_to_all_users() -> None:
    faq = load("broadcast_all")
    chat = faq.Chat()
    async with trio_ws.open_server(chat.handler, "127.0.0.1", 0) as chat.server:
        async with (
            trio_ws.connect(ws_url(chat.server)) as a,
            trio_ws.connect(ws_url(chat.server)) as b,
            trio_ws.connect(ws_url(chat.server)) as c,
        ):
            with trio.fail_after(5):
                while len(chat.server.connections) < 3:
                    await trio.sleep(0.01)
            await a.send("hello all")
            assert [await ws.recv() for ws in (a, b, c)] == ["hello all"] * 3


async def test_message_to_a_single_user_and_the_errors_to_expect() -> None:
    faq = load("single_user")
    async with trio_ws.open_server(faq.handler, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as alice:
            await alice.send("alice")
            async with trio_ws.connect(ws_url(server)) as bob:
                await bob.send("bob")
                with trio.fail_after(5):
                    while "bob" not in faq.USERS:
                        await trio.sleep(0.01)
                await alice.send("to bob: hi bob")
                assert await bob.recv() == "alice: hi bob"
                await alice.send("to carol: anyone?")
                assert await alice.recv() == "error: carol is not connected"
            with trio.fail_after(5):
                while "bob" in faq.USERS:
                    await trio.sleep(0.01)
            await alice.send("to bob: still there?")
            assert await alice.recv() == "error: bob is not connected"


async def test_topics_registry() -> None:
    faq = load("topics")
    async with (
        trio_ws.open_server(faq.handler, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server)) as sub,
        trio_ws.connect(ws_url(server)) as pub,
    ):
        await sub.send("subscribe prices")
        await sub.send("subscribe news")
        await sub.send("unsubscribe news")
        with trio.fail_after(5):  # the commands travel on another connection than the publish
            while "news" in faq.TOPICS or not faq.TOPICS.get("prices"):
                await trio.sleep(0.01)
        await pub.send("publish prices: ACME 101")
        assert await pub.recv() == "reached 1"
        assert await sub.recv() == "prices: ACME 101"
        await pub.send("publish news: nobody listens")
        assert await pub.recv() == "reached 0"
    with trio.fail_after(5):
        while faq.TOPICS:  # no trace left once everybody is gone
            await trio.sleep(0.01)


async def test_hub_topics() -> None:
    faq = load("hub_topics")
    async with trio_ws.open_hub() as hub, trio_ws.open_server(faq.router, "127.0.0.1", 0) as server:
        async with (
            trio_ws.connect(ws_url(server, "/topics/prices")) as a,
            trio_ws.connect(ws_url(server, "/topics/prices")) as b,
            trio_ws.connect(ws_url(server, "/topics/news")) as other,
        ):
            with trio.fail_after(5):
                while len(hub.subscribers("prices")) < 2 or not hub.subscribers("news"):
                    await trio.sleep(0.01)
            await a.send("ACME 101")
            assert [await a.recv(), await b.recv()] == ["ACME 101", "ACME 101"]
            assert await hub.publish("news", "from outside") == 1
            assert await other.recv() == "from outside"  # and nothing from prices before it


async def test_hub_channel() -> None:
    """A task subscribed with open_channel sees every chat line, in order, beside the
    WebSocket subscribers."""
    faq = load("hub_channel")
    async with trio_ws.open_hub(history_size=100) as hub, trio.open_nursery() as nursery:
        await nursery.start(faq.audit, hub)
        async with (
            trio_ws.open_server(faq.chat, "127.0.0.1", 0) as server,
            trio_ws.connect(ws_url(server)) as ann,
            trio_ws.connect(ws_url(server)) as bob,
        ):
            with trio.fail_after(5):
                while len(hub.subscribers("chat")) < 2:
                    await trio.sleep(0.01)
            for line in ("hello", "hi ann", "bye"):
                await ann.send(line)
                assert [await ann.recv(), await bob.recv()] == [line, line]
            with trio.fail_after(5):
                while len(faq.AUDIT) < 3:
                    await trio.sleep(0.01)
        assert faq.AUDIT == ["1: hello", "2: hi ann", "3: bye"]
        nursery.cancel_scope.cancel()


async def test_handler_arguments() -> None:
    import functools

    faq = load("handler_arguments")
    handlers = [
        functools.partial(faq.greet, greeting="Hello", punctuation="!!"),
        faq.make_handler("Good day"),
    ]
    replies = []
    for handler in handlers:
        async with (
            trio_ws.open_server(handler, "127.0.0.1", 0) as server,
            trio_ws.connect(ws_url(server)) as ws,
        ):
            await ws.send("Ann")
            replies.append(await ws.recv())
    assert replies == ["Hello, Ann!!", "Good day, Ann."]


async def test_routing_by_path() -> None:
    faq = load("routing")
    async with open_in_memory_server(faq.router) as app:
        async with app.connect("/?lang=en") as ws:
            assert await ws.recv() == "home, path /?lang=en, query {'lang': ['en']}"
        async with app.connect("/rooms/kitchen") as ws:
            assert await ws.recv() == "welcome to kitchen"
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with app.connect("/elsewhere"):
                pass
        assert info.value.status == 404


async def test_headers_cookies_and_authorization() -> None:
    faq = load("headers")
    async with open_in_memory_server(faq.handler, process_request=faq.process_request) as app:
        headers = {"Authorization": "Bearer abc", "Cookie": "theme=dark; session=s123"}
        async with app.connect("/", extra_headers=headers) as ws:
            assert await ws.recv() == "authorization=Bearer abc session=s123"
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with app.connect("/"):
                pass
        assert info.value.status == 401


async def test_response_headers() -> None:
    faq = load("response_headers")
    async with (
        trio_ws.open_server(faq.handler, "127.0.0.1", 0, **faq.OPTIONS) as server,
        trio_ws.connect(ws_url(server), subprotocols=["chat.v1", "chat.v2"]) as ws,
    ):
        headers = ws.response_headers
        assert headers["Sec-WebSocket-Protocol"] == "chat.v2"
        assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        assert "Server" not in headers
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Set-Cookie"].startswith("session=")
        assert await ws.recv() == "subprotocol chat.v2"


async def test_client_ip() -> None:
    faq = load("client_ip")
    async with (
        trio_ws.open_server(faq.handler, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        assert await ws.recv() == f"you are 127.0.0.1 port {ws.local_address[1]}"


def run_example(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_listen_addresses_explains_a_missing_address() -> None:
    proc = run_example(str(FAQ / "listen_addresses.py"), "192.0.2.1", "0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "error while attempting to bind on address 192.0.2.1" in err
    assert 'host="0.0.0.0"' in err
    proc = run_example(str(FAQ / "listen_addresses.py"), "127.0.0.1", "0")
    try:
        assert proc.stdout is not None
        assert readline_within(proc.stdout, 30).startswith("listening on 127.0.0.1 port ")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def test_shutdown_on_sigterm_closes_clients_with_1001() -> None:
    proc = run_example(str(FAQ / "shutdown.py"), "0")
    try:
        assert proc.stdout is not None
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        url = line.split()[-1]
        async with trio_ws.connect(url) as bye:
            await bye.send("bye")
            with pytest.raises(trio_ws.ConnectionClosedError) as closed_one:
                await bye.recv()
        assert (closed_one.value.code, closed_one.value.reason) == (4000, "see you")
        async with trio_ws.connect(url) as ws:
            await ws.send("echo")
            assert await ws.recv() == "echo"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(trio_ws.ConnectionClosedOK) as info:
                with trio.fail_after(10):
                    await ws.recv()
        assert info.value.code == 1001
        assert await trio.to_thread.run_sync(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


async def test_keep_connections_while_stopping() -> None:
    faq = load("keep_connections")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve, faq.handler, "127.0.0.1", 0)
        async with trio_ws.connect(ws_url(server)) as ws:
            drained = trio.Event()

            async def drain() -> None:
                await faq.drain(server)
                drained.set()

            nursery.start_soon(drain)
            await trio.sleep(0.1)
            with pytest.raises(OSError):  # refused: the listener is closed
                async with trio_ws.connect(ws_url(server)):
                    pass
            await ws.send("still open")
            assert await ws.recv() == "still open"
            assert not drained.is_set()
        with trio.fail_after(5):
            await drained.wait()


async def test_health_check() -> None:
    faq = load("health_check")
    async with trio_ws.open_server(faq.handler, "127.0.0.1", 0, process_request=faq.health_check) as server:
        status, _, body = await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, b"OK\n")
        # A load balancer's probe with a query string is still the health check.
        status, _, body = await http_exchange(
            server.port, b"GET /healthz?from=lb HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert (status, body) == (200, b"OK\n")
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.send("still a websocket")
            assert await ws.recv() == "still a websocket"


async def test_authentication_both_ways() -> None:
    faq = load("authentication")
    async with trio_ws.open_server(faq.router, "127.0.0.1", 0, process_request=faq.process_request) as server:
        good = {"Authorization": "Bearer s3cret-token"}
        async with trio_ws.connect(ws_url(server, "/header"), extra_headers=good) as ws:
            assert await ws.recv() == "hello alice"
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with trio_ws.connect(
                ws_url(server, "/header"), extra_headers={"Authorization": "Bearer no"}
            ):
                pass
        assert info.value.status == 401
        assert isinstance(info.value.headers, trio_ws.Headers)
        assert "Bearer" in info.value.headers["WWW-Authenticate"]
        async with trio_ws.connect(ws_url(server, "/message")) as ws:
            await ws.send("s3cret-token")
            assert await ws.recv() == "hello alice"
        async with trio_ws.connect(ws_url(server, "/message")) as ws:
            await ws.send("wrong")
            with pytest.raises(trio_ws.ConnectionClosedError) as closed:
                await ws.recv()
        assert closed.value.code == 1008


async def test_http_and_websocket_on_one_port() -> None:
    faq = load("http_and_websocket")
    async with trio_ws.open_server(faq.handler, "127.0.0.1", 0, process_request=faq.serve_http) as server:
        status, headers, body = await http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"new WebSocket" in body
        status, _, _ = await http_exchange(server.port, b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
        async with trio_ws.connect(ws_url(server, "/ws")) as ws:
            await ws.send("both")
            assert await ws.recv() == "both"


async def test_read_and_write_in_parallel() -> None:
    faq = load("parallel")

    async def chatty(ws: trio_ws.WebSocket) -> None:
        async with trio.open_nursery() as nursery:

            async def news() -> None:
                for n in range(3):
                    await ws.send(f"news {n}")
                    await trio.sleep(0.02)

            nursery.start_soon(news)
            async for message in ws:
                await ws.send(f"echo {message}")

    async with trio_ws.open_server(chatty, "127.0.0.1", 0) as server:
        received = await faq.talk(ws_url(server), 5)
    assert [m for m in received if str(m).startswith("echo")] == [f"echo tick {n}" for n in range(5)]

    async def fails_midway(ws: trio_ws.WebSocket) -> None:
        await ws.recv()
        await ws.close(1011, "server bug")

    async with trio_ws.open_server(fails_midway, "127.0.0.1", 0) as server:
        with pytest.raises(trio_ws.ConnectionClosedError) as info:  # itself, not an ExceptionGroup
            await faq.talk_or_raise(ws_url(server), 50)
    assert (info.value.code, info.value.reason) == (1011, "server bug")
    assert {m for m in received if str(m).startswith("news")} == {"news 0", "news 1", "news 2"}


async def test_1006_is_caught_and_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    faq = load("closed_1006")
    caplog.set_level(logging.DEBUG)
    async with trio_ws.open_server(faq.handler, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        await raw.stream.aclose()  # vanish without a close frame
        with trio.fail_after(5):
            while not faq.lost:
                await trio.sleep(0.01)
    assert faq.lost == [1006]
    assert not [r for r in caplog.records if r.name.startswith("trio_ws") and r.levelno >= logging.WARNING]


async def test_callbacks_as_a_loop_and_a_blocking_client() -> None:
    faq = load("callbacks_and_sync")

    async def greeter(ws: trio_ws.WebSocket) -> None:
        await ws.send("welcome")
        async for message in ws:
            await ws.send(f"you said {message}")
            if message == "last":
                return

    events: list[Any] = []
    async with trio_ws.open_server(greeter, "127.0.0.1", 0) as server:

        async def on_open(ws: trio_ws.WebSocket) -> None:
            events.append("open")

        async def on_message(ws: trio_ws.WebSocket, message: trio_ws.Message) -> None:
            events.append(message)
            if message == "welcome":
                await ws.send("last")

        await faq.run_with_callbacks(
            ws_url(server),
            on_open,
            on_message,
            lambda code, reason: events.append(("close", code)),
            events.append,
        )
        assert events == ["open", "welcome", "you said last", ("close", 1000)]

        def use_blocking_client() -> list[trio_ws.Message]:
            client = faq.BlockingClient(ws_url(server))
            replies = [client.recv(timeout=5)]
            client.send("plain python")
            replies.append(client.recv(timeout=5))
            client.close()
            return replies

        assert await trio.to_thread.run_sync(use_blocking_client) == ["welcome", "you said plain python"]

    errors: list[Any] = []
    await faq.run_with_callbacks("ws://127.0.0.1:1/", on_open, on_message, print, errors.append)
    assert isinstance(errors[0], OSError)


async def test_recv_timeout_is_cancellation_safe() -> None:
    faq = load("recv_timeout")

    async def late(ws: trio_ws.WebSocket) -> None:
        await trio.sleep(0.3)
        await ws.send("late")
        await ws.send("later")
        await ws.wait_closed()

    async with trio_ws.open_server(late, "127.0.0.1", 0) as server, trio_ws.connect(ws_url(server)) as ws:
        assert await faq.recv_or_none(ws, 0.05) is None
        with pytest.raises(trio.TooSlowError):
            await faq.recv_or_fail(ws, 0.05)
        assert await faq.recv_or_none(ws, 5) == "late"  # nothing was lost to the timeouts
        assert await faq.recv_or_fail(ws, 5) == "later"


async def test_keepalive_detects_latency_and_dead_peers() -> None:
    faq = load("keepalive")
    async with (
        trio_ws.open_server(faq.handler, "127.0.0.1", 0, ping_interval=0.1, ping_timeout=0.2) as server,
        trio_ws.connect(ws_url(server), ping_interval=None) as ws,
    ):
        await trio.sleep(0.3)
        await ws.send("?")
        reply = str(await ws.recv())
        assert reply.startswith("latency ") and float(reply.split()[1]) > 0
        silent = await RawClient.connect(server.port)  # never answers pings
        with trio.fail_after(3):
            await silent.read_to_eof()
        assert silent.frames()[-1].payload[:2] == (1011).to_bytes(2, "big")


async def test_pings_are_answered_automatically() -> None:
    faq = load("pings")

    async def silent(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()  # never calls recv(), yet pongs go out

    async with trio_ws.open_server(silent, "127.0.0.1", 0) as server:
        rtts = await faq.measure(ws_url(server))
    assert len(rtts) == 3 and all(0 < rtt < 1 for rtt in rtts)


async def test_client_close() -> None:
    faq = load("client_close")
    closes = []

    async def record(ws: trio_ws.WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.append((ws.close_code, ws.close_reason))

    async with trio_ws.open_server(record, "127.0.0.1", 0) as server:
        assert await faq.say_hello(ws_url(server)) == (1000, 4000)
        with trio.fail_after(5):
            while len(closes) < 2:
                await trio.sleep(0.01)
    assert closes == [(1000, ""), (4000, "done for today")]


async def test_client_reconnect() -> None:
    faq = load("client_reconnect")

    async def two_then_drop(ws: trio_ws.WebSocket) -> None:
        for n in range(2):
            await ws.send(f"m{n}")
        await ws.close(1011, "crash")  # the server goes wrong after two messages

    messages: list[str] = []
    async with trio_ws.open_server(two_then_drop, "127.0.0.1", 0) as server:
        with trio.fail_after(20):
            opened = await faq.follow(ws_url(server), messages, until=5)
    assert messages == ["m0", "m1", "m0", "m1", "m0"] and opened == 3


async def test_client_tls(tmp_path: Any) -> None:
    import ssl

    import trustme

    faq = load("client_tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def echo_once(ws: trio_ws.WebSocket) -> None:
        await ws.send(await ws.recv())

    async with trio_ws.open_server(echo_once, "127.0.0.1", 0, ssl_context=server_context) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        assert await faq.fetch_one(uri, faq.trusting(str(tmp_path / "ca.pem"))) == "hello over TLS"
        assert await faq.fetch_one(uri, faq.unverified()) == "hello over TLS"
        with pytest.raises(ssl.SSLCertVerificationError):  # the default: verified, and it is unknown
            await faq.fetch_one(uri, ssl.create_default_context())
