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
from trio_ws.server import build_server

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
