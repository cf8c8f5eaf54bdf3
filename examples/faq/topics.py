"""How do I send a message to a channel, a topic, or some users?

Without the Hub (see hub_topics.py): keep a set of connections per topic and `broadcast`
to that set. This registry pattern is what the Hub automates.

Protocol of this example: "subscribe TOPIC", "unsubscribe TOPIC", "publish TOPIC: TEXT".
"""

from __future__ import annotations

from collections import defaultdict

import trio

import trio_ws

TOPICS: defaultdict[str, set[trio_ws.WebSocket]] = defaultdict(set)


def leave(ws: trio_ws.WebSocket, topic: str) -> None:
    """Unsubscribe, and forget a topic nobody wants any more."""
    subscribers = TOPICS.get(topic)
    if subscribers is not None:
        subscribers.discard(ws)
        if not subscribers:
            del TOPICS[topic]


def publish(topic: str, message: str) -> int:
    """Send to everyone subscribed to `topic`; how many it reached."""
    return trio_ws.broadcast(TOPICS.get(topic, ()), message)


async def handler(ws: trio_ws.WebSocket) -> None:
    mine: set[str] = set()
    try:
        async for message in ws:
            command, _, rest = str(message).partition(" ")
            if command == "subscribe":
                TOPICS[rest].add(ws)
                mine.add(rest)
            elif command == "unsubscribe":
                leave(ws, rest)
                mine.discard(rest)
            elif command == "publish":
                topic, _, text = rest.partition(": ")
                await ws.send(f"reached {publish(topic, f'{topic}: {text}')}")
    finally:  # leave no trace
        for topic in mine:
            leave(ws, topic)


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
