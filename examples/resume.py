"""A feed a client can resume: after a drop, it gets what it missed, once each, in order.

    python examples/resume.py [--port 8765]
    python -m trio_ws serve examples.resume:router --port 8765 --workers 2 \\
        --redis redis://127.0.0.1:6379/0 --history-size 1000

Connect to ws://127.0.0.1:8765/feed/TOPIC, or to .../feed/TOPIC?offset=N&epoch=E to resume
after the last message you saw. First comes {"type": "start", "worker", "offset", "epoch",
"recovered"}: where the feed starts, and whether everything after your position was still
in the history (true), or not (false: some messages may be missing; null when not
resuming). Then each message, as {"type": "message", "offset", "epoch", "data"}. Every text
you send is published to the topic.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse

import trio

import trio_ws

router = trio_ws.Router()


def as_json(pub: trio_ws.Publication) -> str:
    """What a subscriber receives: the message with its position."""
    return json.dumps({"type": "message", "offset": pub.offset, "epoch": pub.epoch, "data": pub.data})


def start_message(subscription: trio_ws.Subscription) -> str:
    """Sent before anything else: where the feed starts, and whether it resumed whole."""
    start = subscription.position
    return json.dumps(
        {
            "type": "start",
            "worker": os.getpid(),
            "offset": start.offset if start else None,
            "epoch": start.epoch if start else None,
            "recovered": subscription.recovered,
        }
    )


def position_in(path: str) -> trio_ws.StreamPosition | None:
    """The position in `?offset=N&epoch=E`, or None (a bad one is a client error)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if "offset" not in query:
        return None
    return trio_ws.StreamPosition(int(query["offset"][0]), query.get("epoch", [""])[0])


@router.route("/feed/{topic}")
async def feed(ws: trio_ws.WebSocket, topic: str) -> None:
    hub = trio_ws.current_hub()
    try:
        since = position_in(ws.path)
    except ValueError:
        await ws.close(trio_ws.CloseCode.POLICY_VIOLATION, "offset must be a number from 0, epoch text")
        return
    try:
        async with hub.subscribe(ws, topic, since=since, format=as_json, first=start_message):
            async for message in ws:
                if isinstance(message, str):
                    await hub.publish(topic, message)
    except ValueError as exc:  # a topic the hub refuses (too long, a lone surrogate)
        await ws.close(trio_ws.CloseCode.POLICY_VIOLATION, f"invalid topic: {type(exc).__name__}")


async def main(port: int) -> None:
    async with trio_ws.open_hub(history_size=1000), trio_ws.open_server(router, "127.0.0.1", port) as server:
        print(f"feed on ws://127.0.0.1:{server.port}/feed/TOPIC", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a feed that a client can resume")
    parser.add_argument("--port", type=int, default=8765)
    trio.run(main, parser.parse_args().port)
