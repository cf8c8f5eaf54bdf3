"""An ASGI WebSocket echo served by hypercorn on its Trio worker, with HTTP/2 over TLS: an
independent RFC 8441 server for the interop tests.

python tests/hypercorn_echo.py CERT_FILE KEY_FILE PORT
"""

from __future__ import annotations

import sys
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    version = scope["http_version"].encode()
    await send({"type": "websocket.accept", "headers": [(b"x-http-version", version)]})
    while True:
        event = await receive()
        if event["type"] != "websocket.receive":
            return
        if event.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": event["bytes"]})
        else:
            await send({"type": "websocket.send", "text": event["text"]})


if __name__ == "__main__":
    cert, key, port = sys.argv[1:4]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = cert, key
    config.websocket_max_message_size = 4 * 2**20
    trio.run(serve, app, config)  # type: ignore[arg-type]
