"""A model of the closing handshake over a real connection: each side sends arbitrary
messages from one task while another drains what arrives, and the server, the client or
both close (at once) with arbitrary codes, some while the other side is still sending.

Checked for every run: each side receives exactly the messages the other sent before its
close frame (a `send()` that returned; one that raised `ConnectionClosed` sent nothing), in
order; each side ends with the code the other sent (or echoed); every `send()` that fails
raises `ConnectionClosed`; and both ends are CLOSED well within `close_timeout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws

from .conftest import ws_url
from .strategies import examples

pytestmark = pytest.mark.timeout(120)

CODES = st.sampled_from([1000, 1001, 1008, 1011, 3000, 4000, 4999])
messages = st.lists(st.binary(max_size=3000) | st.text(max_size=300), max_size=12)


class Side:
    """What one end did and saw."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []  # messages whose send() returned
        self.received: list[str | bytes] = []
        self.closed_with: int | None = None  # the code of the ConnectionClosed its receiver saw

    async def drain(self, ws: trio_ws.WebSocket) -> None:
        try:
            while True:
                self.received.append(await ws.recv())
        except trio_ws.ConnectionClosed as closed:
            self.closed_with = closed.code

    async def send_all(self, ws: trio_ws.WebSocket, plan: list[str | bytes], yields: list[int]) -> None:
        for index, message in enumerate(plan):
            for _ in range(yields[index % len(yields)] if yields else 0):
                await trio.lowlevel.checkpoint()
            try:
                await ws.send(message)
            except trio_ws.ConnectionClosed:
                return  # the peer's close frame came first: this one and the rest are not sent
            self.sent.append(message)


async def run_side(
    ws: trio_ws.WebSocket, side: Side, plan: list[str | bytes], yields: list[int], code: int | None
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.drain, ws)
        await side.send_all(ws, plan, yields)
        if code is not None:
            await ws.close(code, "bye")
        else:
            await ws.wait_closed()


@dataclass(frozen=True)
class Scenario:
    """What each side sends, who closes ("server", "client" or "both") with which codes
    (the server's, the client's), and the scheduler turns taken before each send."""

    server_plan: list[str | bytes]
    client_plan: list[str | bytes]
    closer: str
    codes: tuple[int, int]
    yields: list[int]


async def run_model(scenario: Scenario) -> None:
    server_plan, client_plan, closer = scenario.server_plan, scenario.client_plan, scenario.closer
    codes, yields = scenario.codes, scenario.yields
    server, client = Side(), Side()
    server_code = codes[0] if closer in ("server", "both") else None
    client_code = codes[1] if closer in ("client", "both") else None
    done = trio.Event()
    seen: dict[str, trio_ws.WebSocket] = {}

    async def handler(ws: trio_ws.WebSocket) -> None:
        seen["server"] = ws
        try:
            await run_side(ws, server, server_plan, yields, server_code)
        finally:
            done.set()

    async with trio_ws.open_server(handler, "127.0.0.1", 0, close_timeout=5, max_queue=1000) as ws_server:
        with trio.fail_after(4):  # well within close_timeout: nobody waits for a timeout
            async with trio_ws.connect(ws_url(ws_server), close_timeout=5, max_queue=1000) as ws:
                await run_side(ws, client, client_plan, yields, client_code)
            await done.wait()
        server_ws = seen["server"]
        assert ws.state is trio_ws.State.CLOSED and server_ws.state is trio_ws.State.CLOSED
    # Everything sent before a close frame arrives, once, in order.
    assert server.received == client.sent
    assert client.received == server.sent
    if closer == "server":
        assert client.sent == client_plan[: len(client.sent)]
        assert server.sent == server_plan and client.closed_with == codes[0]
        assert server_ws.close_code == codes[0]  # echoed back
    elif closer == "client":
        assert server.sent == server_plan[: len(server.sent)]
        assert client.sent == client_plan and server.closed_with == codes[1]
        assert ws.close_code == codes[1]
    else:
        # Either may see the other's close frame before it has sent everything.
        assert server.sent == server_plan[: len(server.sent)]
        assert client.sent == client_plan[: len(client.sent)]
        # Each receives the other's close frame (or, if one arrived before its own went
        # out, the echo of its own code).
        assert server_ws.close_code in codes and ws.close_code in codes


@settings(max_examples=examples(60), deadline=None)
@given(
    scenario=st.builds(
        Scenario,
        server_plan=messages,
        client_plan=messages,
        closer=st.sampled_from(["server", "client", "both"]),
        codes=st.tuples(CODES, CODES),
        yields=st.lists(st.integers(0, 3), max_size=4),
    )
)
def test_the_closing_handshake_keeps_every_message_sent_before_it(scenario: Scenario) -> None:
    trio.run(run_model, scenario)


@pytest.mark.parametrize("closer", ["server", "client", "both"])
def test_the_model_closes_while_the_other_side_is_still_sending(closer: str) -> None:
    """The sequences the model exists for: a side closes at once while the other has many
    messages to send, and both close at once with different codes."""
    many: list[str | bytes] = [b"m%d" % i * 100 for i in range(200)]
    trio.run(run_model, Scenario([] if closer != "both" else many, many, closer, (4001, 4002), [1]))
