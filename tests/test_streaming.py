"""recv_streaming(): one message's fragments as they arrive, each bounded by max_size, the
message not; cancel-safe; and what a 64 MiB message costs the receiver (in a process of
its own, so that its peak RSS is its own)."""

from __future__ import annotations

import json
import sys

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws

from .conftest import ROOT, ws_url
from .strategies import examples

pytestmark = pytest.mark.timeout(120)
SIZE = 64 * 2**20
CHUNK = 256 * 1024


async def send_big(ws: trio_ws.WebSocket) -> None:
    """Send SIZE bytes of the receiver's pattern as one message of CHUNK-sized fragments."""
    data = memoryview(bytes(range(256)) * (SIZE // 256))
    await ws.send(data[i : i + CHUNK] for i in range(0, SIZE, CHUNK))
    await ws.wait_closed()


async def receive_in_a_process(uri: str, how: str, compression: str) -> dict[str, int]:
    script = ROOT / "tests" / "stream_receiver.py"
    result = await trio.run_process(
        [sys.executable, str(script), uri, how, compression],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("compression", ["none", "deflate"])
async def test_a_64_mib_message_streams_in_fragments_with_little_memory(compression: str) -> None:
    async with trio_ws.open_server(send_big, "127.0.0.1", 0) as server:
        streamed = await receive_in_a_process(ws_url(server), "streaming", compression)
        whole = await receive_in_a_process(ws_url(server), "whole", compression)  # the control
    print(f"{compression}: streaming peak +{streamed['peak_growth'] / 2**20:.1f} MiB "
          f"in {streamed['fragments']} fragments; whole +{whole['peak_growth'] / 2**20:.1f} MiB")  # fmt: skip
    assert streamed["received"] == whole["received"] == SIZE
    assert streamed["intact"] and whole["intact"]
    assert streamed["fragments"] >= SIZE // CHUNK
    assert streamed["peak_growth"] < 8 * 2**20
    assert whole["peak_growth"] > SIZE  # the measure can fail: holding it whole costs it all


async def fragmented_then(ws: trio_ws.WebSocket) -> None:
    await ws.send(iter(["héllo ", "wörld", "!"]))  # text in three frames
    await ws.send(iter([b"\x00", b"\x01" * 10]))
    await ws.send("whole")
    await ws.wait_closed()


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_fragments_come_as_they_were_sent_and_a_whole_message_as_one(compression: str | None) -> None:
    async with trio_ws.open_server(fragmented_then, "127.0.0.1", 0, compression=compression) as server:
        async with trio_ws.connect(ws_url(server), compression=compression) as ws:
            stream = ws.recv_streaming()
            text = [fragment async for fragment in stream]
            binary = [fragment async for fragment in ws.recv_streaming()]
            whole = [fragment async for fragment in ws.recv_streaming()]
    assert "".join(text) == "héllo wörld!" and all(isinstance(f, str) for f in text)
    assert b"".join(binary) == b"\x00" + b"\x01" * 10 and len(binary) >= 1
    assert whole == ["whole"]
    if compression is None:
        assert text == ["héllo ", "wörld", "!"] and binary == [b"\x00", b"\x01" * 10]


async def test_streaming_is_cancel_safe_and_recv_refuses_half_a_message() -> None:
    release = trio.Event()

    async def slow_sender(ws: trio_ws.WebSocket) -> None:
        async def parts() -> object:  # a fragment is sent once the next one is known
            yield "one "
            yield "two "
            await release.wait()
            yield "three"

        await ws.send(parts())  # type: ignore[arg-type]
        await ws.wait_closed()

    async with trio_ws.open_server(slow_sender, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            stream = ws.recv_streaming()
            with trio.fail_after(5):
                assert await stream.__anext__() == "one "
            with trio.move_on_after(0.2) as waited:  # the second fragment is not sent yet
                await stream.__anext__()
            assert waited.cancelled_caught
            with pytest.raises(RuntimeError, match="middle of a message"):
                await ws.recv()
            release.set()
            with trio.fail_after(5):
                rest = [fragment async for fragment in ws.recv_streaming()]
            assert rest == ["two ", "three"]  # nothing lost


async def test_recv_joins_a_message_that_arrived_while_streaming_and_bounds_it() -> None:
    async def two_messages(ws: trio_ws.WebSocket) -> None:
        await ws.send(iter([b"a" * 600, b"b" * 600]))
        await ws.send(iter([b"c" * 600, b"d" * 600]))
        await ws.wait_closed()

    async with trio_ws.open_server(two_messages, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server), max_size=1000) as ws:
            # Streaming is on, so both arrive as fragments of 600 bytes (each under max_size).
            assert [len(f) async for f in ws.recv_streaming()] == [600, 600]
            ws.recv_streaming()  # streaming on, never read: the next message comes as fragments
            with pytest.raises(trio_ws.ConnectionClosedError) as info:
                await ws.recv()  # joined, it would be 1200 bytes: over max_size
    assert info.value.code == 1009


async def test_each_fragment_is_bounded_by_max_size() -> None:
    async def one_big_frame(ws: trio_ws.WebSocket) -> None:
        await ws.send(iter([b"x" * 2000, b"y"]))
        await ws.wait_closed()

    async with trio_ws.open_server(one_big_frame, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server), max_size=1000) as ws:
            with pytest.raises(trio_ws.ConnectionClosedError) as info:
                async for _ in ws.recv_streaming():
                    pass
    assert info.value.code == 1009


@settings(max_examples=examples(200))
@given(
    message=st.text(max_size=300) | st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    switch_at=st.integers(0, 7),
    deflate=st.booleans(),
)
def test_streamed_fragments_join_to_the_message_however_it_is_cut(
    message: str | bytes, cuts: list[int], switch_at: int, deflate: bool
) -> None:
    """Sans-I/O: a message sent in any fragments, with streaming switched on at any frame
    (before the first, in the middle, or never), is received intact: the fragments (and
    the part assembled before streaming began) join to it, text in whole code points."""
    from trio_ws.extensions.permessage_deflate import DeflateConfig, DeflateParameters, PerMessageDeflate
    from trio_ws.messages import Fragment
    from trio_ws.protocol import Protocol, Role

    params, config = DeflateParameters(), DeflateConfig()
    sender = Protocol(
        Role.CLIENT, deflate=PerMessageDeflate(params, is_server=False, config=config) if deflate else None
    )
    receiver = Protocol(
        Role.SERVER,
        max_size=None,
        deflate=PerMessageDeflate(params, is_server=True, config=config) if deflate else None,
    )
    points = sorted({min(c, len(message)) for c in cuts})
    pieces = [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)]
    got: list[object] = []
    for index, piece in enumerate(pieces):
        sender.send(piece, fin=index == len(pieces) - 1)
        got += receiver.receive_data(bytes(sender.data_to_send()), stream=index >= switch_at)
    if any(isinstance(event, Fragment) for event in got):
        assert all(isinstance(event, Fragment) for event in got) and got[-1].fin  # type: ignore[union-attr]
        parts = [event.data for event in got]  # type: ignore[union-attr]
        joined = "".join(parts) if isinstance(message, str) else b"".join(parts)  # type: ignore[arg-type]
    else:
        (joined,) = got
    assert joined == message
