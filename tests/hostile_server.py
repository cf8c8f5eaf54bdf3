"""A trio_ws server in its own process, for tests that measure the server's memory.

python tests/hostile_server.py '{"max_queue": 16}'   (JSON: keyword options of serve)

Routes: /echo sends every message back; /idle never reads (its inbox fills up).
`http2_limits` is given as a JSON object of `Http2Limits` fields.
The first stdout line names the URL.
"""

from __future__ import annotations

import json
import sys

import trio

import trio_ws

router = trio_ws.Router()


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@router.route("/idle")
async def idle(ws: trio_ws.WebSocket) -> None:
    await trio.sleep_forever()


async def main(options: dict[str, object]) -> None:
    if "rlimit_nofile" in options:  # for descriptor exhaustion: a low limit of its own
        import resource

        limit = int(options.pop("rlimit_nofile"))  # type: ignore[call-overload]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    if "http2_limits" in options:  # JSON gives its fields
        options["http2_limits"] = trio_ws.Http2Limits(**options["http2_limits"])  # type: ignore[arg-type]
    async with trio_ws.open_server(router, "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
        sys.stdout.write(f"listening on ws://127.0.0.1:{server.port}/\n")
        sys.stdout.flush()
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
