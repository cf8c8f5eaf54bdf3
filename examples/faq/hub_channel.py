"""How do I send a message to a channel, a topic, or some users? (a task as a subscriber)

A subscriber need not be a WebSocket: `hub.open_channel(topic)` hands a task of the server
a Trio channel of `Publication`s, with the same bounds, overflow policy, history and
`since=` as a WebSocket subscriber. Here an audit task keeps every chat line in order (a
bot, or a bridge to another system, would read the same way), while clients at /chat
publish and receive.
"""

from __future__ import annotations

import trio

import trio_ws

AUDIT: list[str] = []  # what the audit task saw, in order


async def audit(hub: trio_ws.Hub, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every publication to "chat", in order, at the pace this task reads."""
    async with hub.open_channel("chat", queue_size=1000) as channel:
        task_status.started()
        async for publication in channel:
            AUDIT.append(f"{publication.offset}: {publication.data}")


async def chat(ws: trio_ws.WebSocket) -> None:
    hub = trio_ws.current_hub()
    async with hub.subscribe(ws, "chat"):
        async for message in ws:
            await hub.publish("chat", message)


async def main() -> None:
    async with trio_ws.open_hub(history_size=100) as hub, trio.open_nursery() as nursery:
        await nursery.start(audit, hub)
        async with trio_ws.open_server(chat, "127.0.0.1", 8765) as server:
            print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
            await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
