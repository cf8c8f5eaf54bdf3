"""Sends that race each other for a full outbox: whole messages and fragmented ones from
several tasks at once, over a stream whose `send_all` waits for the peer to read (a
lockstep pair), so that every send waits for room and wakes beside the others in a random
order (Trio shuffles each batch of woken tasks)."""

from __future__ import annotations

import trio
import trio.testing

import trio_ws
from trio_ws.client import connect_over
from trio_ws.config import ServerConfig
from trio_ws.frames import Frame, Opcode, serialize_frame
from trio_ws.server import build_server

from .conftest import RawClient

WHOLE = 20_000  # bytes of a whole message
FRAGMENT = 20_000  # bytes of each of the four frames of a fragmented message


async def test_a_send_waiting_for_room_never_lands_inside_a_fragmented_message() -> None:
    """A send() parked on a full outbox must not wake into the middle of a fragmented
    message another task began meanwhile: its frame would end that message early."""

    async def handler(ws: trio_ws.WebSocket) -> None:
        async def whole(tag: int) -> None:
            for _ in range(20):
                await ws.send(bytes([tag]) * WHOLE)

        async def fragmented(tag: int) -> None:
            for _ in range(10):
                await ws.send([bytes([tag]) * FRAGMENT for _ in range(4)])

        async with trio.open_nursery() as nursery:
            for tag in range(3):
                nursery.start_soon(whole, tag)
            for tag in (100, 101):
                nursery.start_soon(fragmented, tag)
        await ws.send("done")
        await ws.wait_closed()

    server = build_server(
        ServerConfig(handler=handler, write_limit=2**12, ping_interval=None, compression=None), []
    )
    client_stream, server_stream = trio.testing.lockstep_stream_pair()
    received: list[bytes] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            async with connect_over(
                client_stream, "ws://in-memory/", max_size=None, max_queue=1, compression=None
            ) as client:
                while (message := await client.recv()) != "done":
                    assert isinstance(message, bytes)
                    received.append(message)
    wholes = [m for m in received if m[0] < 100]
    fragmented = [m for m in received if m[0] >= 100]
    assert len(wholes) == 60 and len(fragmented) == 20, [(m[0], len(m)) for m in received]
    assert all(m == bytes([m[0]]) * WHOLE for m in wholes), "a whole message was cut or joined"
    assert all(m == bytes([m[0]]) * 4 * FRAGMENT for m in fragmented), "a fragmented message was cut or mixed"


async def test_an_answer_held_back_for_a_batch_still_leaves_when_the_handler_waits_elsewhere() -> None:
    """Answers sent while received messages are still queued wait for the handler to
    yield, so that a batch leaves in one write; a handler that answers one message of the
    batch and then sleeps must still get its answer out at once."""

    async def answer_once_then_sleep(ws: trio_ws.WebSocket) -> None:
        await ws.send(f"got {await ws.recv()}")
        await ws.wait_closed()  # not recv(): the two queued messages stay queued

    async with trio_ws.open_server(answer_once_then_sleep, "127.0.0.1", 0, compression=None) as server:
        peer = await RawClient.connect(server.port)
        batch = b"".join(serialize_frame(Frame(Opcode.TEXT, f"m{i}".encode()), mask=True) for i in range(3))
        await peer.stream.send_all(batch)  # three messages in one segment: two stay queued
        with trio.fail_after(2):
            while not peer.frames():
                peer.received += await peer.stream.receive_some()
        assert [frame.payload for frame in peer.frames()] == [b"got m0"]
        await peer.stream.aclose()
