"""A `ServerConfig` for the CLI tests: `python -m trio_ws serve tests.cli_app:config`.

Token auth in `process_request` (401 without `?token=`), a health check that needs none, one
upgraded connection per process (`max_connections=1`), and every answer tagged with the
serving process id, so that a test can tell which worker answered.
"""

from __future__ import annotations

import os

import trio_ws

TOKEN = "s3cret"
router = trio_ws.Router()


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def check_token(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path_only == "/healthz":
        return trio_ws.Response(200, body="ok\n")
    if request.query.get("token") != [TOKEN]:
        return trio_ws.Response(401, body="a valid ?token= is needed\n")
    return None


def tag_worker(request: trio_ws.Request, response: trio_ws.Response) -> None:
    response.headers["X-Worker"] = str(os.getpid())


config = trio_ws.ServerConfig(
    handler=router, process_request=check_token, process_response=tag_worker, max_connections=1
)
