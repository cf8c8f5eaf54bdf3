"""A room with presence, for tests: `/room/TOPIC?name=NAME` subscribes with {"name": NAME}.

First message: {"type": "welcome", "worker": pid}. Send "who" to get {"type": "who",
"names": [...]} (sorted, from `hub.presence`, every process's); every other text is
published to the room.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import trio_ws

router = trio_ws.Router()


@router.route("/room/{topic}")
async def room(ws: trio_ws.WebSocket, topic: str) -> None:
    hub = trio_ws.current_hub()
    name = urllib.parse.parse_qs(urllib.parse.urlsplit(ws.path).query).get("name", ["?"])[0]
    welcome = json.dumps({"type": "welcome", "worker": os.getpid()})
    async with hub.subscribe(ws, topic, info={"name": name}, first=lambda _: welcome):
        async for message in ws:
            if message == "who":
                present = await hub.presence(topic)
                names = sorted(str(info["name"]) for info in present.values() if isinstance(info, dict))
                await ws.send(json.dumps({"type": "who", "names": names}))
            else:
                await hub.publish(topic, str(message))
