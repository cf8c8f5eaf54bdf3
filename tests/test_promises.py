"""What the docs promise about cancellation and closing, and every documented option, each
shown over real sockets; a meta-test fails when a documented option has no test."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest
import trio

import trio_ws
from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame

from .conftest import ROOT, RawClient, echo, healthy_canary, with_canary, ws_url

# ---- cancellation ------------------------------------------------------------------------


async def test_send_cancelled_while_waiting_on_write_limit_sends_all_or_nothing() -> None:
    outcomes: list[str] = []
    go_on = trio.Event()

    async def firehose(ws: trio_ws.WebSocket) -> None:
        for i in range(200):
            with trio.move_on_after(0.3) as scope:
                await ws.send(b"%04d" % i + b"x" * 65_532)
            outcomes.append("cancelled" if scope.cancelled_caught else "sent")
            if scope.cancelled_caught:
                break
        await go_on.wait()
        await ws.send(b"after")
        await ws.recv()

    async with trio_ws.open_server(
        with_canary(firehose), "127.0.0.1", 0, write_limit=2**16, compression=None
    ) as server:
        async with healthy_canary(ws_url(server, "/canary")):
            raw = await RawClient.connect(server.port)  # reads nothing until a send is cancelled
            with trio.fail_after(10):
                while "cancelled" not in outcomes:
                    await trio.sleep(0.05)
            go_on.set()
            with trio.fail_after(10):
                while not any(f.payload == b"after" for f in raw.frames()):
                    raw.received += await raw.stream.receive_some()
            await raw.stream.aclose()
    sent = outcomes.count("sent")
    numbers = [f.payload[:4] for f in raw.frames() if f.opcode is Opcode.BINARY and f.payload != b"after"]
    assert numbers == [b"%04d" % i for i in range(sent)], "the cancelled send must send nothing"
    assert all(len(f.payload) == 65_536 for f in raw.frames() if f.payload[:4] in numbers)


@pytest.mark.parametrize("parts_before_the_stall", [1, 3])
async def test_fragmented_send_cancelled_midway_fails_the_connection_with_1011(
    parts_before_the_stall: int,
) -> None:
    """A fragment leaves once the next one exists (the last must carry FIN), so a stall after
    the first sends nothing and the connection stays usable; after three, two are out and
    the message can never be finished: 1011."""

    async def stalls() -> AsyncIterator[str]:
        for i in range(parts_before_the_stall):
            yield f"part {i}, "
        await trio.sleep_forever()
        yield "never"

    async def handler(ws: trio_ws.WebSocket) -> None:
        with trio.move_on_after(0.2):
            await ws.send(stalls())
        await ws.send("whole")

    async with (
        trio_ws.open_server(handler, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        with trio.fail_after(5):
            if parts_before_the_stall == 1:
                assert await ws.recv() == "whole"
            else:
                with pytest.raises(trio_ws.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011


# ---- close() against a peer that never answers -------------------------------------------


async def test_server_close_returns_within_close_timeout_when_the_client_never_answers() -> None:
    timings: list[tuple[float, int | None]] = []

    async def closes(ws: trio_ws.WebSocket) -> None:
        started = trio.current_time()
        await ws.close()
        timings.append((trio.current_time() - started, ws.close_code))

    async with trio_ws.open_server(with_canary(closes), "127.0.0.1", 0, close_timeout=0.5) as server:
        async with healthy_canary(ws_url(server, "/canary")):
            raw = await RawClient.connect(server.port)  # never answers, never closes TCP
            with trio.fail_after(5):
                while not timings:
                    await trio.sleep(0.02)
            await raw.stream.aclose()
    elapsed, code = timings[0]
    assert 0.45 <= elapsed <= 0.75, elapsed
    assert code == 1006


async def silent_server(task_status: trio.TaskStatus[int], *, answer_close: bool) -> None:
    """Completes one upgrade by hand, then never closes TCP (nor answers close unless told)."""
    from trio_ws.handshake import ServerHandshake

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    task_status.started(listener.socket.getsockname()[1])
    stream = await listener.accept()
    handshake = ServerHandshake()
    while (request := handshake.next_request()) is None:
        handshake.receive_data(await stream.receive_some())
    await stream.send_all(handshake.send_response(handshake.accept(request)))
    parser = FrameParser(require_mask=True)
    while data := await stream.receive_some():
        parser.feed(data)
        while (frame := parser.next_frame()) is not None:
            if frame.opcode is Opcode.CLOSE and answer_close:
                await stream.send_all(serialize_frame(Frame(Opcode.CLOSE, frame.payload)))
    await trio.sleep_forever()


@pytest.mark.parametrize(("answer_close", "code"), [(False, 1006), (True, 1000)])
async def test_client_close_returns_within_close_timeout(answer_close: bool, code: int) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: silent_server(task_status, answer_close=answer_close))
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/", close_timeout=0.5, compression=None) as ws:
            started = trio.current_time()
            await ws.close()
            elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert 0.45 <= elapsed <= 0.75, elapsed  # one close_timeout in all, not one per stage
    assert ws.close_code == code


# ---- options that had no test ------------------------------------------------------------


async def test_select_subprotocol_replaces_the_default_rule() -> None:
    def pick_last(offered: object) -> str | None:
        return list(offered)[-1] if offered else None  # type: ignore[call-overload]

    async with trio_ws.open_server(echo, "127.0.0.1", 0, select_subprotocol=pick_last) as server:
        async with trio_ws.connect(ws_url(server), subprotocols=["a", "b", "c"]) as ws:
            assert ws.subprotocol == "c"
        async with trio_ws.connect(ws_url(server)) as ws:
            assert ws.subprotocol is None


async def test_origins_may_allow_requests_without_an_origin() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, origins=[None, "https://ok.example"]) as server:
        async with trio_ws.connect(ws_url(server)) as ws:  # no Origin header: allowed by None
            await ws.send("no origin")
            assert await ws.recv() == "no origin"
        async with trio_ws.connect(ws_url(server), origin="https://ok.example") as ws:
            assert ws.response.status == 101
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with trio_ws.connect(ws_url(server), origin="https://evil.example"):
                pass
        assert info.value.status == 403


async def test_max_size_none_on_the_server_and_max_size_on_the_client() -> None:
    big = b"b" * (3 * 2**20)
    async with trio_ws.open_server(echo, "127.0.0.1", 0, max_size=None) as server:
        async with trio_ws.connect(ws_url(server), max_size=None) as ws:
            await ws.send(big)
            assert await ws.recv() == big
        async with trio_ws.connect(ws_url(server), max_size=2**20) as ws:
            await ws.send(big)  # the server takes it; its echo is too big for this client
            with pytest.raises(trio_ws.ConnectionClosedError) as info:
                await ws.recv()
        assert info.value.code == 1009


async def test_max_queue_none_and_max_queue_bytes_bound_the_inbox() -> None:
    states: list[trio_ws.State] = []

    async def sleepy(ws: trio_ws.WebSocket) -> None:
        await trio.sleep(0.3)
        states.append(ws.state)
        async for _ in ws:
            pass

    async with trio_ws.open_server(sleepy, "127.0.0.1", 0, max_queue=None, max_queue_bytes=1000) as server:
        raw = await RawClient.connect(server.port)
        burst = b"".join(serialize_frame(Frame(Opcode.BINARY, b"x" * 400), mask=True) for _ in range(5))
        await raw.stream.send_all(burst + serialize_frame(Frame(Opcode.CLOSE, b"\x03\xe8"), mask=True))
        with trio.fail_after(5):
            await raw.read_to_eof()
    # No limit in messages, but past 1,000 queued bytes parsing paused: at 0.3 s the close
    # frame behind the third message was still unparsed, so the connection was open.
    assert states == [trio_ws.State.OPEN]


@pytest.mark.parametrize("level", [0, 1, 9])
async def test_deflate_config_levels_and_windows_interoperate(level: int) -> None:
    config = trio_ws.DeflateConfig(
        level=level, mem_level=9, server_max_window_bits=15, client_max_window_bits=9
    )
    text = "the same words again and again " * 2000
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, compression=config) as server,
        trio_ws.connect(ws_url(server), compression=trio_ws.DeflateConfig(level=level)) as ws,
    ):
        assert "permessage-deflate" in ws.response_headers["Sec-WebSocket-Extensions"]
        await ws.send(text)
        assert await ws.recv() == text


async def test_user_agent_header_and_its_absence() -> None:
    agents: list[str | None] = []

    async def record(ws: trio_ws.WebSocket) -> None:
        agents.append(ws.request_headers.get("User-Agent"))

    async with trio_ws.open_server(record, "127.0.0.1", 0) as server:
        for user_agent_header in ["bot/1.0", None]:
            async with trio_ws.connect(ws_url(server), user_agent_header=user_agent_header) as ws:
                with pytest.raises(trio_ws.ConnectionClosedOK):
                    await ws.recv()
    assert agents == ["bot/1.0", None]


async def test_reuse_port_lets_two_servers_share_a_port() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, reuse_port=True) as first:
        async with trio_ws.open_server(echo, "127.0.0.1", first.port, reuse_port=True) as second:
            assert second.port == first.port
        with pytest.raises(OSError, match="another process is listening there"):
            async with trio_ws.open_server(echo, "127.0.0.1", first.port):
                pass


async def test_logger_option_receives_the_connection_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("my_app.ws")
    caplog.set_level(logging.DEBUG, logger="my_app.ws")
    async with trio_ws.open_server(echo, "127.0.0.1", 0, logger=logger) as server:
        async with trio_ws.connect(ws_url(server, "/x?token=secret")):
            pass
        await trio.sleep(0.05)
    opened = [
        r.getMessage()
        for r in caplog.records
        if r.name == "my_app.ws" and "connection open" in r.getMessage()
    ]
    assert opened and opened[0].endswith("connection open: /x?token=***")


def documented_options() -> set[str]:
    """Every option named in the guide: the server table, the client paragraph, DeflateConfig."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    names = set(re.findall(r"^\| `([a-z_]+)` \|", guide, flags=re.MULTILINE))
    client = guide[guide.index("## Connecting") : guide.index("## The `WebSocket`")]
    options = client[client.index("Options:") :]
    names |= set(re.findall(r"`([a-z_]+)`", options[: options.index("\n\n")]))
    names |= set(re.findall(r"\b([a-z_]+)=", guide[guide.index("`DeflateConfig(") :].split("`")[1]))
    client = (ROOT / "docs" / "client.md").read_text()
    for cell in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", client, flags=re.MULTILINE):
        names |= set(re.findall(r"`([a-z_]+)`", cell))
    return names


def test_every_documented_option_is_passed_by_some_test() -> None:
    options = documented_options()
    assert {"select_subprotocol", "close_timeout", "max_queue", "level", "user_agent_header"} <= options
    assert {"proxy", "max_redirects", "ping_timeout"} <= options  # docs/client.md's table too
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("**/*.py"))
    untested = sorted(name for name in options if not re.search(rf"\b{name}=", sources))
    assert not untested, f"documented options no test passes: {untested}"
