"""How do I send a message to a channel, a topic, or some users? (with the Hub)

`trio_ws.open_hub()` keeps topics for you: `hub.subscribe(ws, *topics)` while a block runs,
`await hub.publish(topic, message)` from anywhere. Each subscriber has a bounded queue, so a
slow client loses its oldest messages (or is disconnected with 1013) instead of slowing the
publisher; with `backend=trio_ws.RedisBackend(url)` publishes reach other processes too.

Clients connect to /topics/NAME; what they send is published to NAME.
"""

from __future__ import annotations

import trio

import trio_ws

router = trio_ws.Router()


@router.route("/topics/{topic}")
async def topic_handler(ws: trio_ws.WebSocket, topic: str) -> None:
    hub = trio_ws.current_hub()  # the hub of the enclosing open_hub() block
    async with hub.subscribe(ws, topic):
        async for message in ws:
            await hub.publish(topic, message)


async def main() -> None:
    async with (
        trio_ws.open_hub(queue_size=64, on_overflow="drop_oldest") as hub,
        trio_ws.open_server(router, "127.0.0.1", 8765) as server,
    ):
        print(f"listening on ws://127.0.0.1:{server.port}/topics/NAME", flush=True)
        while True:
            await trio.sleep(10)
            await hub.publish("clock", "tick")  # publishing from outside any handler


if __name__ == "__main__":
    trio.run(main)
