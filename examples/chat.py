"""Chat rooms, one Hub topic per room. Runs alone, or in N processes over Redis:

    python examples/chat.py [--port 8765]
    python -m trio_ws serve examples.chat:router --port 8765 --workers 2 --redis redis://127.0.0.1:6379/0

Connect to ws://127.0.0.1:8765/chat/ROOM?name=NAME. Every text you send goes to everyone in
the room, as JSON: {"type": "message", "room", "name", "text"}; joins and leaves are
announced as {"type": "join" | "leave", "room", "name"}. On connecting you first get
{"type": "welcome", "room", "worker"}, where worker is the serving process id.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse

import trio

import trio_ws

router = trio_ws.Router()


def event(kind: str, room: str, **fields: str | int) -> str:
    return json.dumps({"type": kind, "room": room, **fields})


@router.route("/chat/{room}")
async def chat(ws: trio_ws.WebSocket, room: str) -> None:
    hub = trio_ws.current_hub()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(ws.path).query)
    name = query.get("name", ["anonymous"])[0][:40]
    await ws.send(event("welcome", room, worker=os.getpid()))  # first, before any room traffic
    async with hub.subscribe(ws, room):
        await hub.publish(room, event("join", room, name=name))
        try:
            async for message in ws:
                if isinstance(message, str):
                    await hub.publish(room, event("message", room, name=name, text=message))
        finally:
            with trio.move_on_after(1, shield=True):  # announce the leave even when cancelled
                await hub.publish(room, event("leave", room, name=name))


async def main(port: int) -> None:
    async with trio_ws.open_hub(), trio_ws.open_server(router, "127.0.0.1", port) as server:
        print(f"chat on ws://127.0.0.1:{server.port}/chat/ROOM?name=NAME", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="chat rooms over a Hub")
    parser.add_argument("--port", type=int, default=8765)
    trio.run(main, parser.parse_args().port)
