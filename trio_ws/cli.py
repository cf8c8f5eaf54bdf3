"""`python -m trio_ws`: a client (interactive or not), and a multi-process server runner.

python -m trio_ws [connect] ws://host:port/path [--batch] [--header "Name: value"]...
                  [--subprotocol P]... [--proxy URL|none] [--insecure]
python -m trio_ws serve pkg.module:name [--host H] [--port P] [--workers N] [--redis URL]
                  [--max-connections N] [--max-size BYTES] [--certfile PEM]... (see serve --help)
python -m trio_ws demo [--host H] [--port P] [--workers N] [--redis URL] [server options of serve]
python -m trio_ws --help

The client sends each line typed and prints what arrives ("< message"); `/ping` prints the
round-trip time, `/close [code] [reason]` closes, end of input closes with 1000; however it
ends, a last line gives the close code and reason (on stderr with --batch). With
--batch, lines are sent as they are and messages printed as they are; after end of input
it closes once a second passed without a message (or when the server closes), and the exit code
says how the connection ended: 0 for 1000 or 1001, 3 for any other close, 1 if it could not
connect.

The Redis URL may come from the environment instead (TRIO_WS_REDIS_URL), which keeps a
password off the command line, where `ps` shows it to every user of the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import trio

from .backends.cluster import RedisClusterBackend
from .backends.redis import RedisBackend
from .client import connect
from .config import (
    EXPECTED_HANDLER,
    ClientConfig,
    ConnectOptions,
    ServeOptions,
    ServerConfig,
    describe,
    is_handler,
)
from .connection import WebSocket
from .exceptions import ConnectionClosed, WebSocketError
from .hub_config import HubConfig, HubOptions
from .listeners import open_listeners
from .server import WebSocketServer, serve_listeners
from .supervisor import WORKER_VARIABLE, Supervisor

__all__ = ["main", "REDIS_URL_VARIABLE"]

REDIS_URL_VARIABLE = "TRIO_WS_REDIS_URL"
ARGS_VARIABLE = "TRIO_WS_WORKER_ARGS"  # a worker's parsed command line, as JSON
METRICS_DIRECTORY_VARIABLE = "TRIO_WS_METRICS_DIR"  # where workers share their metrics snapshots
log = logging.getLogger("trio_ws.cli")
DEMO_TARGET = "trio_ws.demo:config"


def load_target(target: str) -> ServerConfig:
    """Import "pkg.module:name": a `ServerConfig` as it is, a handler or Router wrapped in
    one; anything else is refused, saying what it is."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise SystemExit(f"error: expected pkg.module:name, got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"error: cannot load {target}: {exc}") from exc
    if isinstance(found, ServerConfig):
        return found
    if not is_handler(found):
        raise SystemExit(f"error: {target} is {describe(found)}, not a handler: {EXPECTED_HANDLER}")
    return ServerConfig(handler=found)


@dataclasses.dataclass(frozen=True)
class ServeFlag:
    """A command-line flag for one `ServerConfig` option; given, it replaces the target's."""

    option: str
    parse: Callable[[str], object]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.option.replace("_", "-")


def _or_none(parse: Callable[[str], float]) -> Callable[[str], float | None]:
    def parse_or_none(text: str) -> float | None:
        return None if text.lower() == "none" else parse(text)

    return parse_or_none


def _compression(text: str) -> str | None:
    if text not in ("deflate", "none"):
        raise ValueError(f"expected deflate or none, not {text!r}")
    return None if text == "none" else text


#: The options a deployment most often sets, as flags of `serve`.
SERVE_FLAGS = (
    ServeFlag("max_connections", _or_none(int), "upgraded connections at once, then 503 (none: no limit)"),
    ServeFlag("max_size", _or_none(int), "largest incoming message in bytes, then 1009 (none: no limit)"),
    ServeFlag("open_timeout", _or_none(float), "seconds for TLS and the upgrade (none: no limit)"),
    ServeFlag("ping_interval", _or_none(float), "seconds between keepalive pings (none: no pings)"),
    ServeFlag("ping_timeout", _or_none(float), "seconds to wait for a pong, then 1011 (none: forever)"),
    ServeFlag("close_timeout", float, "seconds to wait for the peer while closing"),
    ServeFlag("compression", _compression, "deflate (permessage-deflate) or none"),
    ServeFlag("metrics_port", int, "serve /metrics on this port, not the server's (turns metrics on)"),
    ServeFlag(
        "graceful_timeout",
        _or_none(float),
        "seconds a drain (SIGTERM) lets handlers finish before closing the rest with 1001 (none: no limit)",
    ),
    ServeFlag(
        "forwarded_allow_ips",
        str,
        "comma-separated proxy addresses or networks (or *) whose X-Forwarded-For, "
        "X-Forwarded-Proto and Forwarded headers are believed",
    ),
)


def flag_options(args: argparse.Namespace) -> ServeOptions:
    """The options given as flags (origins and TLS included), to replace the target's; a
    ValueError names a flag whose value does not parse."""
    options: dict[str, object] = {}
    for flag in SERVE_FLAGS:
        text = getattr(args, flag.option)
        if text is not None:
            try:
                options[flag.option] = flag.parse(text)
            except ValueError:
                raise ValueError(f"{flag.flag}: {text!r} is not a valid value ({flag.help})") from None
    if args.reuse_port:
        options["reuse_port"] = True
    if args.metrics or "metrics_port" in options:
        options["metrics"] = True
    if args.http2 or args.http2_cleartext:
        options["http2"] = True
    if args.http2_cleartext:
        options["http2_cleartext"] = True
    if args.redact_logs is not None:
        options["redact_logs"] = args.redact_logs
    if args.origin:
        options["origins"] = [None if origin == "none" else origin for origin in args.origin]
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
        options["ssl_context"] = context
    return options  # type: ignore[return-value]  # each value parsed to its option's type above


def hub_of(config: ServerConfig, args: argparse.Namespace) -> HubConfig:
    """The hub the CLI opens: the target's `hub` (or a plain one), with --redis and the hub
    flags replacing its values."""
    hub = config.hub if config.hub is not None else HubConfig()
    changes: HubOptions = {}
    if args.redis:
        kind = RedisClusterBackend if args.cluster else RedisBackend
        changes["backend"] = (
            kind(args.redis)
            if args.presence_ttl is None
            else kind(args.redis, presence_ttl=args.presence_ttl)
        )
    if args.history_size is not None:
        changes["history_size"] = args.history_size
    if args.history_ttl is not None:
        changes["history_ttl"] = args.history_ttl
    return hub.replace(**changes) if changes else hub


def app_config(args: argparse.Namespace, options: ServeOptions) -> ServerConfig:
    """What `serve` runs: the target's configuration, each flag given replacing its value."""
    config = load_target(args.target).replace(**options)
    return config.replace(hub=hub_of(config, args))


def configure_logging(level: str | None) -> None:
    """Log to stderr unless the app configured logging itself (its configuration stays);
    --log-level sets the level of trio_ws's loggers either way."""
    if not logging.getLogger().handlers:
        numeric = logging.WARNING if level is None else getattr(logging, level.upper())
        logging.basicConfig(level=numeric, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if level is not None:
        logging.getLogger("trio_ws").setLevel(level.upper())


def say(line: str) -> None:
    """A line on stdout in one write, newline included: workers share stdout, and an
    unbuffered print() writes the line and its newline separately."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def inherited_listeners(fds: list[int]) -> list[trio.SocketListener]:
    """Listeners over the sockets a supervisor opened and passed down."""
    return [trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=fd))) for fd in fds]


async def run_worker(config: ServerConfig, args: argparse.Namespace, worker: dict[str, Any] | None) -> None:
    """One serving process: alone, or a worker of a `Supervisor` (`worker` then holds its
    sockets, its ready pipe and the supervisor's pid). SIGTERM or SIGINT drains; a second
    one stops at once."""
    if worker is None:
        listeners = await open_listeners(
            args.host, args.port, backlog=config.backlog, reuse_port=config.reuse_port
        )
    else:
        listeners = inherited_listeners(worker["fds"])
    directory = os.environ.get(METRICS_DIRECTORY_VARIABLE)
    sharing = worker is not None and config.metrics and directory is not None
    if sharing and config.metrics_port is not None:
        # The supervisor serves the metrics port, from what each worker shares.
        config = config.replace(metrics=False, metrics_port=None)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            if sharing:
                from .metrics import EXPORTER

                assert worker is not None and directory is not None
                EXPORTER.share_through(directory, str(worker["slot"]))
                nursery.start_soon(EXPORTER.share)  # cancelled once the server has drained

            async def serving(task_status: trio.TaskStatus[WebSocketServer]) -> None:
                await serve_listeners(config, listeners, task_status=task_status)
                nursery.cancel_scope.cancel()  # drained, or closed by the app: nothing left to follow

            server: WebSocketServer = await nursery.start(serving)
            scheme = "ws" if config.ssl_context is None else "wss"
            if worker is None and getattr(args, "announce", None):
                say(args.announce.format(host=args.host, port=server.port))
            say(f"worker {os.getpid()} listening on {scheme}://{args.host}:{server.port}/")
            if worker is not None:
                os.write(worker["ready_fd"], b"r")
                os.close(worker["ready_fd"])
                nursery.start_soon(watch_supervisor, worker["supervisor"], server)
            async for signum in signals:
                if server.draining.is_set():
                    log.warning("%s again: stopping now", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
                log.warning(
                    "%s: draining: accepting stopped, handlers have %s s to finish (again: stop now)",
                    signal.Signals(signum).name,
                    config.graceful_timeout,
                )
                nursery.start_soon(server.drain)


async def watch_supervisor(supervisor: int, server: WebSocketServer) -> None:
    """Drain if the supervisor died (SIGKILL leaves workers orphaned, adopted by init)."""
    while os.getppid() == supervisor:  # noqa: ASYNC110 -- no event says a parent died: poll
        await trio.sleep(1)
    log.warning("the supervisor (pid %d) is gone: draining", supervisor)
    await server.drain()


async def supervise(config: ServerConfig, args: argparse.Namespace) -> int:
    """`--workers N`: open the sockets here and keep N workers on them (`Supervisor`)."""
    # One socket per worker slot, in one SO_REUSEPORT group (see `Supervisor`).
    first = await open_listeners(args.host, args.port, backlog=config.backlog, reuse_port=True)
    port = first[0].socket.getsockname()[1]
    slots = [first]
    for _ in range(args.workers - 1):
        slots.append(await open_listeners(args.host, port, backlog=config.backlog, reuse_port=True))
    scheme = "ws" if config.ssl_context is None else "wss"
    if getattr(args, "announce", None):
        say(args.announce.format(host=args.host, port=port))
    environment = dict(os.environ)
    # The workers take the parsed command line from the environment, where no `ps` shows
    # the Redis URL's password.
    worker_args = {**vars(args), "workers": 1, "port": port, "announce": None}
    environment[ARGS_VARIABLE] = json.dumps(worker_args)
    command = [sys.executable, "-m", "trio_ws", "serve", args.target]
    supervisor = Supervisor(
        command,
        environment,
        [[listener.socket for listener in listeners] for listeners in slots],
        url=f"{scheme}://{args.host}:{port}/",
    )
    if not config.metrics:
        return await supervisor.run()
    # Each worker writes its figures here; a scrape of any of them sums them all.
    with tempfile.TemporaryDirectory(prefix="trio_ws-metrics-") as directory:
        environment[METRICS_DIRECTORY_VARIABLE] = directory
        if config.metrics_port is None:
            return await supervisor.run()
        from .metrics import EXPORTER, serve_metrics

        EXPORTER.share_through(directory, None)
        async with trio.open_nursery() as nursery:
            metrics_port = await nursery.start(serve_metrics, args.host, config.metrics_port)
            say(f"metrics on http://{args.host}:{metrics_port}/metrics")
            code = await supervisor.run()
            nursery.cancel_scope.cancel()
        return code


EXIT_NORMAL, EXIT_NO_CONNECTION, EXIT_USAGE, EXIT_ABNORMAL = 0, 1, 2, 3
QUIET_BEFORE_CLOSING = 1.0  # --batch: after end of input, close once nothing arrived this long


async def client(uri: str, config: ClientConfig, batch: bool) -> int:
    """Send each line of stdin; print each message; return the exit code for how it ended."""
    quiet = trio.CancelScope()  # --batch, after end of input: a second without a message ends it
    async with connect(uri, config) as ws, trio.open_nursery() as nursery:

        async def show() -> None:
            with contextlib.suppress(ConnectionClosed):  # the line below says how it ended
                async for message in ws:
                    quiet.deadline = trio.current_time() + QUIET_BEFORE_CLOSING
                    if batch:
                        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                        print(text, flush=True)
                    else:
                        print(f"< {message!r}" if isinstance(message, bytes) else f"< {message}", flush=True)
            print(closing_line(ws), file=sys.stderr if batch else sys.stdout, flush=True)
            nursery.cancel_scope.cancel()

        nursery.start_soon(show)
        while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
            line = line.rstrip("\n")
            if not batch and line.startswith("/"):
                await command(ws, line)
            else:
                await ws.send(line)
        if batch:  # end of input: the replies to the last lines may still be on their way
            quiet.deadline = trio.current_time() + QUIET_BEFORE_CLOSING  # each message extends it
            with quiet:
                await trio.sleep_forever()
        await ws.close()  # replies already on their way are still shown
    return EXIT_NORMAL if ws.close_code in (1000, 1001) else EXIT_ABNORMAL


def closing_line(ws: WebSocket) -> str:
    """How the connection ended, whoever closed it: "connection closed: code = 1001 (going
    away): server restarting"."""
    return f"connection closed: {ConnectionClosed.for_code(ws.close_code or 1006, ws.close_reason or '')}"


async def command(ws: WebSocket, line: str) -> None:
    """/ping, /close [code] [reason]; anything else starting with / is sent as it is."""
    name, _, rest = line.partition(" ")
    if name == "/ping":
        print(f"pong in {await ws.ping() * 1000:.1f} ms", flush=True)
    elif name == "/close":
        code_text, _, reason = rest.strip().partition(" ")
        await ws.close(int(code_text) if code_text.isdigit() else 1000, reason)
    else:
        await ws.send(line)


def client_config(args: argparse.Namespace) -> ClientConfig:
    """connect()'s configuration from the client's command line; ValueError for a bad flag."""
    options: ConnectOptions = {}
    if args.header:
        headers = []
        for header in args.header:
            name, sep, value = header.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"--header takes 'Name: value', not {header!r}")
            headers.append((name.strip(), value.strip()))
        options["extra_headers"] = headers
    if args.subprotocol:
        options["subprotocols"] = args.subprotocol
    if args.proxy is not None:
        options["proxy"] = None if args.proxy == "none" else args.proxy
    if args.insecure:
        print("warning: --insecure: the server's certificate is not checked", file=sys.stderr)
    if args.insecure and args.uri.startswith("wss://"):  # ssl_context is for wss:// alone
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        options["ssl_context"] = context
    return ClientConfig(**options)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", help="ws:// or wss://")
    parser.add_argument("--batch", action="store_true", help="not interactive: lines in, messages out")
    parser.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="an extra request header")
    parser.add_argument("--subprotocol", action="append", help="a subprotocol to offer")
    parser.add_argument("--proxy", metavar="URL", help="http://, socks5://... or none (default: environment)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")


def add_serve_arguments(parser: argparse.ArgumentParser, *, target: bool = True) -> None:
    if target:
        parser.add_argument("target", help="pkg.module:name: a handler, a Router or a trio_ws.ServerConfig")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port, supervised: one that dies is replaced, SIGHUP restarts "
        "them one generation at a time (default: %(default)s)",
    )
    parser.add_argument("--pid-file", metavar="PATH", help="write the (supervisor's) pid here while it runs")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="the level of trio_ws's loggers; info shows the access log on trio_ws.access "
        "(default: warning, or what the app's own logging configuration says)",
    )
    options = parser.add_argument_group("server options (each replaces the target's own)")
    defaults = {field.name: field.default for field in dataclasses.fields(ServerConfig)}
    for flag in SERVE_FLAGS:
        default = defaults[flag.option]
        shown = "none" if default is None else default
        options.add_argument(
            flag.flag, dest=flag.option, metavar=flag.option.upper(), help=f"{flag.help} (default: {shown})"
        )
    options.add_argument(
        "--origin",
        action="append",
        metavar="ORIGIN",
        help="an allowed Origin; none allows requests without one (default: any Origin)",
    )
    options.add_argument("--certfile", metavar="PEM", help="serve wss:// with this certificate chain")
    options.add_argument(
        "--keyfile", metavar="PEM", help="the certificate's private key, if not in --certfile"
    )
    options.add_argument(
        "--reuse-port",
        action="store_true",
        default=None,
        help="set SO_REUSEPORT, so that separate serve processes share the port (--workers does not need it)",
    )
    options.add_argument(
        "--metrics",
        action="store_true",
        default=None,
        help="export Prometheus metrics at /metrics, summed over the workers (needs trio-ws[metrics])",
    )
    options.add_argument(
        "--http2",
        action="store_true",
        default=None,
        help="serve WebSockets over HTTP/2 too (RFC 8441): with --certfile, ALPN offers h2 "
        "(needs trio-ws[http2])",
    )
    options.add_argument(
        "--http2-cleartext",
        action="store_true",
        default=None,
        help="also take HTTP/2 without TLS by prior knowledge, from an h2c proxy (turns --http2 on)",
    )
    options.add_argument(
        "--redact-logs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log query values and passwords as *** (default: yes)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get(REDIS_URL_VARIABLE),
        help=f"carry hub publishes between processes (default: ${REDIS_URL_VARIABLE})",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the --redis URL is a node of a Redis Cluster (sharded pub/sub, Redis 7)",
    )
    hub = parser.add_argument_group("hub options (each replaces the target's HubConfig value)")
    hub.add_argument(
        "--history-size",
        type=int,
        metavar="N",
        help="publications each hub topic keeps, with positions, for resuming (default: 0)",
    )
    hub.add_argument(
        "--history-ttl",
        type=float,
        metavar="SECONDS",
        help="how long a publication is kept at most (default: 300)",
    )
    hub.add_argument(
        "--presence-ttl",
        type=float,
        metavar="SECONDS",
        help="with --redis: how soon a dead process's subscribers leave the presence (default: 15)",
    )


def parser_for() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_ws",
        description="trio_ws: a WebSocket client, a server runner and the chat demo.",
        epilog="A URI alone (python -m trio_ws ws://host/path) means `connect` to it.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{connect,serve,demo}")
    connecting = commands.add_parser("connect", help="connect to a WebSocket server (interactive or --batch)")
    add_client_arguments(connecting)
    serving = commands.add_parser("serve", help="run pkg.module:handler in one or more processes")
    add_serve_arguments(serving)
    demo = commands.add_parser(
        "demo",
        help="the chat demo: a page at / and the chat at /ws",
        description="The chat demo (trio_ws.demo:config): open http://HOST:PORT/ in a browser.",
    )
    add_serve_arguments(demo, target=False)
    demo.set_defaults(target=DEMO_TARGET)
    return parser


def run_client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        config = client_config(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return trio.run(client, args.uri, config, args.batch)
    except KeyboardInterrupt:
        return EXIT_NORMAL
    except BrokenPipeError:
        return stdout_closed()
    except (OSError, WebSocketError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_CONNECTION
    except BaseExceptionGroup as group:
        broken, rest = group.split(BrokenPipeError)
        if broken is not None and rest is None:
            return stdout_closed()
        raise


def stdout_closed() -> int:
    """stdout was closed (`| head -5`): the reader has what it wanted, so end quietly, with
    stdout on /dev/null so that flushing it at exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_NORMAL


def options_or_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ServeOptions:
    """`flag_options`, or a usage error (exit 2) naming the flag that is wrong."""
    if args.keyfile and not args.certfile:
        parser.error("--keyfile needs --certfile")
    try:
        return flag_options(args)
    except (ValueError, OSError) as exc:  # OSError: a certificate file that cannot be read
        parser.error(str(exc))


def run_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    worker = json.loads(os.environ.pop(WORKER_VARIABLE, "null"))
    if worker is not None:  # a worker of a supervisor: the same command line as its own
        args = argparse.Namespace(**json.loads(os.environ.pop(ARGS_VARIABLE)))
    options = options_or_usage(parser, args)
    try:  # a target or an option that cannot run is refused here, before any worker starts
        if args.cluster and not args.redis:
            raise ValueError("--cluster needs --redis URL (a node of the cluster)")
        if args.presence_ttl is not None and not args.presence_ttl > 0:
            raise ValueError(f"--presence-ttl must be a positive number of seconds, not {args.presence_ttl}")
        config = app_config(args, options)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {args.target}: {exc}") from None
    configure_logging(args.log_level)
    if args.workers > 1 and config.hub is not None and config.hub.backend is None:
        log.warning(
            "--workers %d without --redis: each process has a hub of its own, so a publish reaches "
            "only the clients of the process that made it",
            args.workers,
        )
    with pid_file(args.pid_file if worker is None else None):
        try:
            if args.workers > 1:
                return trio.run(supervise, config, args)
            trio.run(run_worker, config, args, worker)
        except (ConnectionError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write this process's pid to `path` while it runs, for a process manager."""
    if path is None:
        yield
        return
    with open(path, "w") as file:
        file.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def run_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`serve trio_ws.demo:config`, announcing the page once it listens."""
    page = "https" if args.certfile else "http"  # the page's own scheme (over TLS with --certfile)
    args.announce = f"chat demo on {page}://{{host}}:{{port}}/ (Ctrl-C to stop)"
    return run_serve(parser, args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith(("ws://", "wss://")):
        argv = ["connect", *argv]
    parser = parser_for()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(parser, args)
    if args.command == "demo":
        return run_demo(parser, args)
    configure_logging(None)
    return run_client(parser, args)
