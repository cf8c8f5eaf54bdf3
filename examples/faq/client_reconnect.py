"""How do I reconnect automatically when the connection drops?

`trio_ws.reconnect(uri)` yields a new connection each time the previous one ended: use
each until it closes, and the loop connects again. Failed attempts wait a back-off that
doubles from `initial_delay` (1 s) up to `max_delay` (30 s), with jitter; network errors,
timeouts, 5xx and 429 (honouring `Retry-After`) are retried, any other refusal (403, 404)
is raised at once. The connections live in the block's own nursery, so the loop body may
do anything; leaving the block closes the current connection cleanly.
"""

from __future__ import annotations

import sys

import trio

import trio_ws


async def follow(uri: str, messages: list[str], until: int) -> int:
    """Collect messages across reconnections until `until` have arrived; return how many
    connections that took."""
    async with trio_ws.reconnect(uri, initial_delay=0.1, max_delay=5) as connections:
        async for ws in connections:
            try:
                async for message in ws:
                    messages.append(str(message))
                    if len(messages) >= until:
                        return connections.opened
            except trio_ws.ConnectionClosedError:
                pass  # dropped: the loop reconnects
    raise AssertionError("reconnect() only ends by raising")


if __name__ == "__main__":
    received: list[str] = []
    uri = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
    print(trio.run(follow, uri, received, 10), received)
