"""A model of receiving over a real connection: arbitrary messages (whole, or fragmented in
any parts, text or binary, compressed or not), each taken in an arbitrary way: `recv()`,
`recv_streaming()` to the end, part of it then the rest from a new stream after a cancelled
step, a stream made and dropped before a `recv()`, and cancelled waits in between.

After every message: what was taken joins to exactly what was sent, in order; a `recv()` in
the middle of a streamed message is refused; a cancelled step takes nothing; and a streamed
message comes as the fragments it was sent in (the stream was asked for before it was sent).
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws

from .conftest import ws_url
from .strategies import examples

pytestmark = pytest.mark.timeout(120)

Message = tuple[bool, list[str]]  # (text, parts): one part is sent whole
Plan = tuple[Message, str, int, bool]  # the message, how it is taken, k, a cancelled wait first

TEXT = st.characters(blacklist_categories=("Cs",))  # what UTF-8 can carry
HOW = ["recv", "stream", "partial", "dropped_stream_then_recv"]

plans = st.lists(
    st.tuples(
        st.tuples(st.booleans(), st.lists(st.text(TEXT, max_size=2000), min_size=1, max_size=4)),
        st.sampled_from(HOW),
        st.integers(1, 3),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


def joined(text: bool, parts: list[str]) -> str | bytes:
    whole = "".join(parts)
    return whole if text else whole.encode()


def as_sent(text: bool, part: str) -> str | bytes:
    return part if text else part.encode()


async def run_plan(plan: list[Plan], compression: str | None) -> None:
    async def sender(ws: trio_ws.WebSocket) -> None:
        """Sends message i once the client says "next": nothing arrives unasked."""
        for (text, parts), _, _, _ in plan:
            assert await ws.recv() == "next"
            if len(parts) == 1:
                await ws.send(as_sent(text, parts[0]))
            else:
                await ws.send(iter([as_sent(text, part) for part in parts]))
        await ws.wait_closed()

    async with (
        trio_ws.open_server(sender, "127.0.0.1", 0, compression=compression) as server,
        trio_ws.connect(ws_url(server), compression=compression, max_size=None) as ws,
    ):
        for (text, parts), how, k, cancelled_wait in plan:
            if cancelled_wait:  # nothing was sent: the wait is cancelled and takes nothing
                with trio.move_on_after(0.01) as scope:
                    await ws.recv()
                assert scope.cancelled_caught
            with trio.fail_after(10):
                if how == "recv":
                    await ws.send("next")
                    if k == 2:  # a recv() cancelled before it begins takes nothing, even when ready
                        await trio.sleep(0.005)
                        with trio.CancelScope() as scope:
                            scope.cancel()
                            await ws.recv()
                    assert await ws.recv() == joined(text, parts)
                elif how == "dropped_stream_then_recv":
                    ws.recv_streaming()  # asked for, never read: recv() joins the fragments
                    await ws.send("next")
                    assert await ws.recv() == joined(text, parts)
                elif how == "stream":
                    stream = ws.recv_streaming()
                    await ws.send("next")
                    assert [f async for f in stream] == [as_sent(text, p) for p in parts]
                else:
                    stream = ws.recv_streaming()
                    await ws.send("next")
                    taken = [await stream.__anext__() for _ in range(min(k, len(parts)))]
                    assert taken == [as_sent(text, p) for p in parts[: len(taken)]]
                    if len(taken) < len(parts):
                        with pytest.raises(RuntimeError, match="middle of a message"):
                            await ws.recv()
                        with trio.CancelScope() as scope:  # a step cancelled before it begins
                            scope.cancel()
                            await stream.__anext__()
                        rest = [f async for f in ws.recv_streaming()]  # a new stream goes on
                        assert rest == [as_sent(text, p) for p in parts[len(taken) :]]
                    else:
                        with pytest.raises(StopAsyncIteration):
                            await stream.__anext__()
        # Nothing is left over: the next recv() waits.
        with trio.move_on_after(0.01) as scope:
            await ws.recv()
        assert scope.cancelled_caught


@pytest.mark.parametrize("compression", [None, "deflate"])
@settings(max_examples=examples(40), deadline=None)
@given(plan=plans)
def test_every_way_of_taking_messages_gets_each_once_whole_and_in_order(
    compression: str | None, plan: list[Plan]
) -> None:
    trio.run(run_plan, plan, compression)


def test_the_model_reaches_a_partial_stream_continued_by_a_new_one() -> None:
    """The sequence the model exists for, spelled out: a message in three parts, one taken,
    recv() refused, a cancelled step, and the rest from a new stream; then a recv() of a
    message that a dropped stream left to come as fragments."""
    plan: list[Plan] = [
        ((True, ["é" * 10, "b", "c"]), "partial", 1, True),
        ((False, ["x", "y"]), "dropped_stream_then_recv", 1, False),
        ((True, ["whole"]), "recv", 1, True),
    ]
    trio.run(run_plan, plan, "deflate")
