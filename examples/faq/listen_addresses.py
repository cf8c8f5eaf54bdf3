"""How do I set the IP addresses my server listens on?

Pass `host`: "127.0.0.1" (this machine only), "0.0.0.0" (every IPv4 interface), "::" (every
IPv6 one), or None (every address family the machine has, on one port).

"error while attempting to bind on address ('::1', ...)" means that a name such as localhost
resolved to an IPv6 address the machine does not have. trio_ws says so, and what to pass
instead:

    OSError: error while attempting to bind on address [::1]:8765: this machine has no such
    IPv6 address (or no IPv6 at all); pass host="0.0.0.0" or "127.0.0.1" to listen on IPv4 only

    python examples/faq/listen_addresses.py [HOST] [PORT]
"""

from __future__ import annotations

import sys

import trio

import trio_ws


async def handler(ws: trio_ws.WebSocket) -> None:
    await ws.send(f"served on {ws.local_address[0]}")


async def main(host: str | None, port: int) -> None:
    try:
        async with trio_ws.open_server(handler, host, port) as server:
            for address in server.addresses:
                print(f"listening on {address[0]} port {address[1]}", flush=True)
            await trio.sleep_forever()
    except OSError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    args = sys.argv[1:]
    host = args[0] if args and args[0] != "None" else None
    trio.run(main, host, int(args[1]) if len(args) > 1 else 8765)
