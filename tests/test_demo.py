"""The chat demo: its protocol over a real socket, and its page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

import trio_ws

from .conftest import ROOT, RedisServer, free_port, install_debian_package, readline_within
from .test_handshake import http_exchange

pytestmark = pytest.mark.timeout(900)  # the browser fixture may install Chromium

CHROMIUM = "/usr/bin/chromium"


# ---- the protocol, without a browser ----------------------------------------------------


PRESENCE = ("join", "leave", "present")


async def next_event(ws: trio_ws.WebSocket, kind: str) -> dict[str, Any]:
    """The next event of type `kind`, skipping presence events."""
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == kind:
            return event
        assert event["type"] in PRESENCE, event


def without_position(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key not in ("offset", "epoch")}


async def test_demo_protocol_and_its_errors() -> None:
    from trio_ws.demo import config

    async with trio_ws.open_hub(history_size=10), trio_ws.open_server(config, "127.0.0.1", 0) as server:
        status, headers, page = await http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"new WebSocket" in page and b"http" not in page.split(b"<script>")[1].replace(b"https:", b"")
        status, _, _ = await http_exchange(server.port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with trio_ws.connect(url) as ann, trio_ws.connect(url) as bob:
            await ann.send(json.dumps({"type": "join", "room": "lobby", "name": "ann"}))
            welcome = json.loads(await ann.recv())
            assert welcome["type"] == "welcome" and welcome["offset"] == 0 and welcome["recovered"] is None
            present = await next_event(ann, "present")
            assert [person["name"] for person in present["people"]] == ["ann"]
            await bob.send(json.dumps({"type": "join", "room": "lobby", "name": "bob"}))
            assert json.loads(await bob.recv())["type"] == "welcome"
            bob_joined = await next_event(ann, "join")
            assert (bob_joined["name"], bob_joined["room"]) == ("bob", "lobby")
            present = await next_event(bob, "present")
            assert sorted(person["name"] for person in present["people"]) == ["ann", "bob"]
            for bad, why in [("{nope", "invalid JSON"), ('{"type": "dance"}', "unknown"), ("[]", "unknown")]:
                await bob.send(bad)
                assert why in (await next_event(bob, "error"))["error"]
            await bob.send(json.dumps({"type": "message", "text": "x" * 1001}))
            assert "too long" in (await next_event(bob, "error"))["error"]
            await bob.send(json.dumps({"type": "ping", "t": 12.5}))
            assert await next_event(bob, "pong") == {"type": "pong", "t": 12.5}
            await bob.send(json.dumps({"type": "message", "text": "still here"}))
            for ws in (ann, bob):  # ann saw none of bob's errors (next_event would fail), only this
                expected = {"type": "message", "room": "lobby", "name": "bob", "text": "still here"}
                received = await next_event(ws, "message")
                assert without_position(received) == expected and received["offset"] == 1
            await bob.send(b"x" * (2**16 + 1))
            with pytest.raises(trio_ws.ConnectionClosedError) as info:
                while True:
                    await bob.recv()
            assert info.value.code == 1009
            bob_left = await next_event(ann, "leave")
            assert (bob_left["name"], bob_left["id"]) == ("bob", bob_joined["id"])
        async with trio_ws.connect(url) as rude:
            await rude.send("hello?")
            assert "first message" in json.loads(await rude.recv())["error"]
            with pytest.raises(trio_ws.ConnectionClosedError):
                await rude.recv()


async def test_a_page_that_rejoins_with_its_position_gets_what_it_missed() -> None:
    """ann leaves after bob's first message and rejoins with its position: she gets bob's
    next two, once each, in order, then live ones. A position of another epoch is told it
    may have missed some (`recovered` false), and a malformed `since` is ignored."""
    from trio_ws.demo import config

    async with trio_ws.open_hub(history_size=10), trio_ws.open_server(config, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"

        async def joined(name: str, **fields: Any) -> tuple[Any, dict[str, Any]]:
            ws = await stack.enter_async_context(trio_ws.connect(url))
            await ws.send(json.dumps({"type": "join", "room": "lobby", "name": name, **fields}))
            return ws, await next_event(ws, "welcome")

        async with AsyncExitStack() as stack:
            bob, _ = await joined("bob")
            async with trio_ws.connect(url) as ann:
                await ann.send(json.dumps({"type": "join", "room": "lobby", "name": "ann"}))
                await next_event(ann, "welcome")
                await bob.send(json.dumps({"type": "message", "text": "one"}))
                first = await next_event(ann, "message")
            for text in ("two", "three"):
                await bob.send(json.dumps({"type": "message", "text": text}))
            since = {"offset": first["offset"], "epoch": first["epoch"]}
            ann, welcome = await joined("ann", since=since)
            assert welcome["recovered"] is True and welcome["offset"] == 3
            assert [(await next_event(ann, "message"))["text"] for _ in range(2)] == ["two", "three"]
            await bob.send(json.dumps({"type": "message", "text": "four"}))
            assert (await next_event(ann, "message"))["text"] == "four"
            _, welcome = await joined("cat", since={"offset": 1, "epoch": "another"})
            assert welcome["recovered"] is False
            _, welcome = await joined("dan", since={"offset": "1", "epoch": 5})
            assert welcome["recovered"] is None


async def test_demo_workers_run_the_demos_configuration() -> None:
    """`demo --workers 2` serves trio_ws.demo:config, so every worker closes a message past
    the demo's 64 KiB with 1009 (it once served the bare app, at the 1 MiB default)."""
    import trio

    port = free_port()
    command = [sys.executable, "-m", "trio_ws", "demo", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [readline_within(proc.stdout, 30) for _ in range(3)]  # the page's line, each worker's
        assert sum("listening on" in line for line in lines) == 2, lines
        closed_by: set[int] = set()
        with trio.fail_after(60):
            for _ in range(200):
                async with trio_ws.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                    await ws.send(json.dumps({"type": "join", "room": "r", "name": "n"}))
                    worker = json.loads(await ws.recv())["worker"]
                    if worker in closed_by:
                        continue
                    await ws.send(b"x" * (2**16 + 1))
                    with pytest.raises(trio_ws.ConnectionClosedError) as info:
                        while True:
                            await ws.recv()
                    assert info.value.code == 1009
                    closed_by.add(worker)
                if len(closed_by) == 2:
                    break
        assert len(closed_by) == 2
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ---- the page, in headless Chromium ------------------------------------------------------


def ensure_chromium() -> str:
    """Debian's chromium, installed when missing (no browser download)."""
    if not os.path.exists(CHROMIUM):
        install_debian_package("chromium")
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is needed for the browser tests: apt-get install chromium")
    return CHROMIUM


class Demo:
    """`python -m trio_ws demo` in its own process, restartable on the same port; `extra`
    are more arguments (`--redis URL --reuse-port` lets several share the port)."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port() if port is None else port
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trio_ws", "demo", "--port", str(self.port), *self.extra],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert "chat demo on http://" in readline_within(self.proc.stdout, 30)
        if self.extra:  # a worker: its own line follows once it listens
            assert "listening on" in readline_within(self.proc.stdout, 30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def demo() -> Iterator[Demo]:
    running = Demo()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = ensure_chromium()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        yield browser
        browser.close()


def join(browser: Any, url: str, name: str, room: str) -> Any:
    page = browser.new_page()
    page.goto(url)
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join-button")
    page.wait_for_selector("#status.ok", timeout=10_000)
    return page


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def messages(page: Any) -> list[str]:
    return [item.inner_text() for item in page.query_selector_all("#log li.message")]


def test_two_pages_in_a_room_see_each_other_and_a_third_room_sees_nothing(
    demo: Demo, browser: Any, tmp_path: Path
) -> None:
    ann = join(browser, demo.url, "ann", "lobby")
    bob = join(browser, demo.url, "bob", "lobby")
    eve = join(browser, demo.url, "eve", "kitchen")
    say(ann, "hello from ann")
    say(bob, "hello from bob")
    for page in (ann, bob):
        page.wait_for_function("document.querySelectorAll('#log li.message').length >= 2", timeout=10_000)
        assert sorted(messages(page)) == ["annhello from ann", "bobhello from bob"]
        page.wait_for_function("document.querySelectorAll('#people li').length === 2", timeout=10_000)
        assert sorted(li.inner_text() for li in page.query_selector_all("#people li")) == ["ann", "bob"]
    assert "joined" in ann.inner_text("#log")  # bob's arrival was announced to ann
    ann.wait_for_function(
        "document.getElementById('latency').textContent.startsWith('latency')", timeout=10_000
    )
    screenshot = tmp_path / "demo.png"  # docs/demo.png was taken this way
    ann.screenshot(path=str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000
    eve.wait_for_timeout(500)
    assert messages(eve) == []
    assert [li.inner_text() for li in eve.query_selector_all("#people li")] == ["eve"]


def test_markup_in_a_message_is_shown_as_text(demo: Demo, browser: Any) -> None:
    ann = join(browser, demo.url, "ann", "xss")
    mallory = join(browser, demo.url, "<b>mallory</b>", "xss")
    payload = "<img src=x onerror=alert(1)>"
    dialogs: list[str] = []
    ann.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    say(mallory, payload)
    ann.wait_for_function("document.querySelectorAll('#log li.message').length >= 1", timeout=10_000)
    assert messages(ann) == ["<b>mallory</b>" + payload]
    assert ann.query_selector("#log img") is None and ann.query_selector("#log b") is None
    ann.wait_for_timeout(300)
    assert dialogs == []


def test_the_page_reconnects_after_the_server_restarts(demo: Demo, browser: Any) -> None:
    ann = join(browser, demo.url, "ann", "lobby")
    demo.stop()
    ann.wait_for_selector("#status.down", timeout=10_000)
    assert "reconnecting" in ann.inner_text("#status")
    demo.start()
    ann.wait_for_selector("#status.ok", timeout=20_000)
    # The restarted process has a new hub: its history is not the one ann's position is in.
    assert ann.inner_text("#log li.warning") == "some messages may be missing"
    bob = join(browser, demo.url, "bob", "lobby")
    say(ann, "back again")
    bob.wait_for_function("document.querySelectorAll('#log li.message').length >= 1", timeout=10_000)
    assert messages(bob) == ["annback again"]


def worker_of(page: Any) -> int:
    return int(page.inner_text("#worker").split()[1])


def test_a_page_whose_worker_restarts_shows_what_it_missed_once_each_in_order(
    browser: Any, redis_server: RedisServer
) -> None:
    """Two demo processes share a port and a Redis. ann's process is stopped; bob, on the
    other, says five things; ann's process starts again. ann's page reconnects (to either)
    with its position and shows the five, once each, in order, and no warning."""
    port = free_port()
    extra = ("--redis", redis_server.url, "--reuse-port")
    demos = [Demo(port, extra), Demo(port, extra)]
    for demo in demos:
        demo.start()
    try:
        ann = join(browser, demos[0].url, "ann", "lobby")
        ann_demo = next(demo for demo in demos if demo.pid == worker_of(ann))
        for _ in range(50):  # SO_REUSEPORT picks a process per connection
            bob = join(browser, demos[0].url, "bob", "lobby")
            if worker_of(bob) != ann_demo.pid:
                break
            bob.close()
        assert worker_of(bob) != ann_demo.pid
        say(ann, "before")
        for page in (ann, bob):
            page.wait_for_function(
                "document.querySelectorAll('#log li.message').length === 1", timeout=10_000
            )
        ann_demo.stop()
        ann.wait_for_selector("#status.down", timeout=10_000)
        away = [f"while you were away {i}" for i in range(5)]
        for text in away:
            say(bob, text)
        bob.wait_for_function("document.querySelectorAll('#log li.message').length === 6", timeout=10_000)
        ann_demo.start()
        ann.wait_for_selector("#status.ok", timeout=20_000)
        ann.wait_for_function("document.querySelectorAll('#log li.message').length >= 6", timeout=10_000)
        ann.wait_for_timeout(500)  # nothing more is on its way (no duplicate)
        assert messages(ann) == ["annbefore"] + ["bob" + text for text in away]
        assert ann.query_selector("#log li.warning") is None
        say(bob, "and live again")
        ann.wait_for_function("document.querySelectorAll('#log li.message').length === 7", timeout=10_000)
        assert sorted(li.inner_text() for li in ann.query_selector_all("#people li")) == ["ann", "bob"]
    finally:
        for demo in demos:
            demo.stop()
