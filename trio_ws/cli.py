"""`python -m trio_ws`: an interactive client, and a multi-process server runner.

python -m trio_ws ws://host:port/path
python -m trio_ws serve pkg.module:handler [--host H] [--port P] [--workers N] [--redis URL]

The Redis URL may come from the environment instead (TRIO_WS_REDIS_URL), which keeps a
password off the command line, where `ps` shows it to every user of the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import logging
import os
import signal
import subprocess
import sys
from typing import Any

import trio

from .backends.redis import RedisBackend
from .client import connect
from .exceptions import ConnectionClosed
from .hub import open_hub
from .server import serve

__all__ = ["main", "REDIS_URL_VARIABLE"]

REDIS_URL_VARIABLE = "TRIO_WS_REDIS_URL"


def load_target(target: str) -> Any:
    """Import "pkg.module:name" and return the named object."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise SystemExit(f"expected pkg.module:handler, got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"cannot load {target}: {exc}") from exc


async def run_worker(target: str, host: str, port: int, redis: str | None, reuse_port: bool) -> None:
    """One process: a hub (with Redis if asked), the server, a graceful exit on SIGTERM/SIGINT."""
    handler = load_target(target)
    backend = RedisBackend(redis) if redis else None
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_hub(backend=backend), trio.open_nursery() as nursery:
            start = functools.partial(serve, handler, host, port, reuse_port=reuse_port)
            server = await nursery.start(start)
            # One write, newline included: workers share stdout, and an unbuffered print()
            # writes the line and its newline separately, interleaving with the others.
            sys.stdout.write(f"worker {os.getpid()} listening on ws://{host}:{server.port}/\n")
            sys.stdout.flush()
            async for _ in signals:
                await server.aclose()
                break


def run_workers(args: argparse.Namespace) -> int:
    """Start N worker processes sharing the port; forward SIGTERM/SIGINT; wait for them."""
    if args.port == 0:
        raise SystemExit("--workers needs a fixed --port: each worker would pick another one")
    command = [
        sys.executable,
        "-m",
        "trio_ws",
        "serve",
        args.target,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    environment = dict(os.environ)
    if args.redis:  # through the environment: the workers' command lines show no password
        environment[REDIS_URL_VARIABLE] = args.redis
    workers = [subprocess.Popen([*command, "--reuse-port"], env=environment) for _ in range(args.workers)]

    signals_received = 0

    def stop(signum: int, frame: object) -> None:
        """The first signal asks the workers to close gracefully; a second one kills them."""
        nonlocal signals_received
        signals_received += 1
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM if signals_received == 1 else signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return max(worker.wait() for worker in workers)


async def interactive(uri: str) -> None:
    """Print what the server sends; send each line typed. Ctrl-D (end of input) closes."""
    async with connect(uri) as ws, trio.open_nursery() as nursery:

        async def show() -> None:
            try:
                async for message in ws:
                    print(f"< {message!r}" if isinstance(message, bytes) else f"< {message}", flush=True)
            except ConnectionClosed as exc:
                print(f"connection closed: {exc}", flush=True)
            nursery.cancel_scope.cancel()

        nursery.start_soon(show)
        while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
            await ws.send(line.rstrip("\n"))
        await ws.close()  # end of input: replies already on their way are still shown


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "serve":
        parser = argparse.ArgumentParser(prog="python -m trio_ws serve")
        parser.add_argument("target", help="pkg.module:handler (a handler or a Router)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
        parser.add_argument(
            "--redis",
            metavar="URL",
            default=os.environ.get(REDIS_URL_VARIABLE),
            help=f"carry hub publishes between processes (default: ${REDIS_URL_VARIABLE})",
        )
        parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
        args = parser.parse_args(argv[1:])
        if args.workers > 1:
            return run_workers(args)
        try:
            trio.run(run_worker, args.target, args.host, args.port, args.redis, args.reuse_port)
        except ConnectionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if len(argv) == 1 and argv[0].startswith(("ws://", "wss://")):
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(interactive, argv[0])
        return 0
    print(__doc__, file=sys.stderr)
    return 2
