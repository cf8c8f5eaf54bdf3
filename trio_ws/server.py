"""The WebSocket server: listeners, the opening handshake, and each connection's lifetime."""

from __future__ import annotations

import errno
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

import trio

from .config import (
    DEFAULT_SERVER_HEADER,
    Handler,
    ServeOptions,
    ServerConfig,
    configured,
)
from .connection import WebSocket, new_websocket, running_in
from .counters import METRICS_PATH, ServerStats, Snapshot
from .counters import register as register_stats
from .counters import unregister as unregister_stats
from .exceptions import CloseCode, ConnectionClosed
from .extensions.permessage_deflate import config_for
from .forwarded import TrustedProxies
from .handshake import RejectHandshake, ServerHandshake
from .http import Request, Response
from .http2_messages import PREFACE, request_from_fields, response_fields
from .hub import Hub, open_hub
from .keepalive import KeepaliveTimers
from .listeners import open_listeners
from .open_handshakes import OpenHandshakes, Opening
from .protocol import Role, State
from .reader_starts import ReaderStarts
from .sockets import peer_address, receive_some, send_all
from .tasks import open_nursery_unwrapped, raise_unwrapped
from .transport import Transport, transport_for
from .uri import redacted_target

if TYPE_CHECKING:  # h2 is an extra: imported only by a server that serves HTTP/2
    from .http2_connection import Http2Connection, Http2Stream

__all__ = [
    "serve",
    "serve_listeners",
    "open_server",
    "build_server",
    "ServerConfig",
    "ServeOptions",
    "WebSocketServer",
    "Handler",
    "DEFAULT_SERVER_HEADER",
]

_RETRY_AFTER = 5  # seconds, in the 503 answer past max_connections
_ACCEPT_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# accept(2) on Linux: a connection that failed before it was accepted (reset, refused by a
# firewall, its network gone) is reported by the next accept, which is simply tried again.
_ACCEPT_RETRY_ERRORS = {
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
}
_ACCEPT_CLOSED_ERRORS = {errno.EBADF, errno.ENOTSOCK}  # the listener was closed (a drain)
_USE_CONFIG: Any = object()  # drain()'s default: the configuration's graceful_timeout

access_logger = logging.getLogger("trio_ws.access")
"""One line per HTTP answer (refusals, upgrades) and per closed connection, at INFO."""


class WebSocketServer:
    """A running server: where it listens, its open connections, and `aclose`."""

    def __init__(
        self, config: ServerConfig, listeners: list[trio.SocketListener], hub: Hub | None = None
    ) -> None:
        self.config = config
        """The configuration it runs."""
        self.hub = hub
        """The hub `config.hub` opened with it, else None."""
        self.draining = trio.Event()
        """Set once the server stops accepting (`drain()` or `aclose()`): a handler or the lifespan can
        wait on it to tell its clients to move elsewhere."""
        self._trusted = (
            None if config.forwarded_allow_ips is None else TrustedProxies(config.forwarded_allow_ips)
        )
        self._redact = config.redact_logs
        self._handler = config.handler
        self._max_connections = config.max_connections
        self._upgraded = 0  # connections past the 101, not yet finished
        self._listeners = listeners
        self._ssl_context = config.ssl_context
        self._new_handshake = functools.partial(
            ServerHandshake,
            subprotocols=config.subprotocols,
            select_subprotocol=config.select_subprotocol,
            origins=config.origins,
            server_header=config.server_header,
            extra_headers=config.extra_headers,
            compression=config_for(config.compression),
        )
        # The server's process_request, then the handler's own (a Router's): those there are.
        hooks = (config.process_request, getattr(config.handler, "process_request", None))
        self._request_hooks = tuple(hook for hook in hooks if hook is not None)
        self._process_response = config.process_response
        self.logger = config.logger or logging.getLogger("trio_ws.server")
        self.connections: set[WebSocket] = set()
        """Every connection whose handler is running and whose socket is not closed."""
        self._accepting = trio.CancelScope()
        # The cancel scope of every connection still in its opening handshake: stopping
        # cancels them, so neither an idle preconnect nor a slow process_response delays
        # aclose(), and no connection upgrades behind its back.
        self.handshakes = OpenHandshakes(config.open_timeout)
        """The opening handshakes in progress, each cut off at `open_timeout` (its task is
        one of `start_timers`)."""
        self._closing = False
        self._finished = trio.Event()
        self._handlers_done = trio.Event()  # every connection (handshake or handler) has ended
        self._handler_scopes: set[trio.CancelScope] = set()  # cancelled if they outlive aclose()
        self.keepalive = KeepaliveTimers()
        self.reader_starts = ReaderStarts()
        """Where its connections' readers are started, if they need one (see `start_timers`)."""
        """The keepalive pings of every connection, from one task (started by `serve`)."""
        self.counts = ServerStats()
        """What it and its connections count as they go (read with `stats()`)."""
        self.metrics_port: int | None = None
        """The port `/metrics` is served on when `config.metrics_port` asks for one of its
        own (the real one when 0 was asked for), once it listens."""
        # `/metrics` answered on the server's own port (imported here: an optional extra).
        self._metrics_response: Callable[[], Response] | None = None
        if config.metrics and config.metrics_port is None:
            from .metrics import metrics_response

            self._metrics_response = metrics_response
        self._http2_connections: set[Http2Connection] = set()
        if config.http2 and config.ssl_context is not None:
            # One port for both: a client that speaks h2 says so in ALPN.
            config.ssl_context.set_alpn_protocols(["h2", "http/1.1"])

    def stats(self) -> Snapshot:
        """Its figures now, by metric name (see `trio_ws.stats()`, which adds up every
        server and hub of the process)."""
        return self.counts.server_snapshot(len(self.connections), len(self._http2_connections))

    @property
    def addresses(self) -> list[Any]:
        """The socket address of each listener."""
        return [listener.socket.getsockname() for listener in self._listeners]

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when 0 was asked for)."""
        port: int = self.addresses[0][1]
        return port

    async def aclose(
        self,
        close_connections: bool = True,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "",
    ) -> None:
        """Stop accepting at once, then end the connections and wait for every handler.

        With `close_connections=True` each connection gets a close frame with `code`, and
        whatever is still running after `close_timeout` (a close the peer does not answer, a
        handler that does not notice its connection closed) is aborted or cancelled; with
        False the handlers finish on their own time. Do not call it from a handler of this
        server: it waits for them all.
        """
        self._closing = True
        self.handshakes.cancel_all()
        await self._stop_accepting()
        if close_connections:
            deadline = trio.current_time() + self.config.close_timeout
            async with trio.open_nursery() as nursery:
                for ws in list(self.connections):
                    nursery.start_soon(ws.close, code, reason)
            # A handler that never looks at its connection again (it waits on something
            # else) would hold the server open forever: past close_timeout, it is cancelled.
            with trio.move_on_at(deadline):
                await self._handlers_done.wait()
            for scope in list(self._handler_scopes):
                scope.cancel()
        await self._finished.wait()

    async def drain(self, graceful_timeout: float | None = _USE_CONFIG) -> None:
        """Stop accepting at once; let the handlers finish for up to `graceful_timeout`
        seconds (the configuration's by default; None: no limit); then `aclose()` the rest
        with 1001, each close bounded by `close_timeout`.

        Handshakes already under way still upgrade, so a client that connected just before
        is served, not refused. `draining` is set as it begins.
        """
        if graceful_timeout is _USE_CONFIG:
            graceful_timeout = self.config.graceful_timeout
        await self._stop_accepting()
        with trio.move_on_after(float("inf") if graceful_timeout is None else graceful_timeout):
            await self._handlers_done.wait()
        await self.aclose()

    async def _stop_accepting(self) -> None:
        self.draining.set()
        self._accepting.cancel()
        for connection in list(self._http2_connections):
            connection.go_away()  # no new streams; the open ones carry on
        for listener in self._listeners:
            await listener.aclose()

    async def _run(self, task_status: trio.TaskStatus[WebSocketServer]) -> None:
        lifespan: AbstractAsyncContextManager[object] = nullcontext()
        if self.config.lifespan is not None:
            lifespan = self.config.lifespan(self, self.hub)
        try:
            async with trio.open_nursery() as timers:
                self.start_timers(timers)
                if self.config.metrics_port is not None:
                    from .metrics import serve_metrics

                    host = self.addresses[0][0] if self._listeners else "127.0.0.1"
                    self.metrics_port = await timers.start(serve_metrics, host, self.config.metrics_port)
                register_stats(self)
                # Entered before the first accept and left once every connection ended: the
                # app's own tasks outlive every handler that might use them.
                async with lifespan:
                    async with trio.open_nursery() as connections:
                        with self._accepting:
                            async with trio.open_nursery() as accepting:
                                for listener in self._listeners:
                                    accepting.start_soon(self._accept_loop, listener, connections)
                                task_status.started(self)
                    self._handlers_done.set()
                timers.cancel_scope.cancel()  # every connection has ended
        finally:
            unregister_stats(self)
            self._handlers_done.set()
            for listener in self._listeners:
                listener.socket.close()
            self._finished.set()

    def start_timers(self, nursery: trio.Nursery) -> None:
        """Start, in `nursery`, the tasks that serve every connection: keepalive pings, each
        opening handshake's `open_timeout`, and the readers' late starts (`serve` does, as
        does `trio_ws.testing`)."""
        nursery.start_soon(self.keepalive.run)
        nursery.start_soon(self.handshakes.run)
        nursery.start_soon(self.reader_starts.run)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept into `nursery` (the connections' nursery) until the listener is closed.

        This is `trio.serve_listeners(handler_nursery=...)` but for three things it cannot
        do for us: a drain closes the listeners while this waits in `accept()`, which must
        end the loop quietly (trio's raises ClosedResourceError out of the server); the
        accept errors that mean "out of file descriptors" are logged on the server's own
        logger, where an operator looks, rather than on `trio.serve_listeners`; and the
        client's address comes with each accepted socket, where `SocketListener.accept`
        drops it (asking the socket again costs a system call per connection).
        """
        sock = listener.socket
        while True:
            try:
                accepted, remote = await sock.accept()
            except trio.ClosedResourceError:
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_CLOSED_ERRORS:
                    return
                if exc.errno in _ACCEPT_RETRY_ERRORS:
                    continue
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise
                self.logger.error("accept failed (%s); retrying in 100 ms", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self.serve_stream, trio.SocketStream(accepted), remote)

    async def serve_stream(self, tcp_stream: trio.abc.Stream, remote_address: Any = None) -> None:
        """Handshake on an accepted stream, then run the handler, until the connection ends.

        The accept loop calls it for each TCP connection, with the client's address as
        accept gave it (else it is asked of the socket); `trio_ws.testing` calls it with an
        in-memory stream. Nothing that happens here reaches the caller.
        """
        stream: trio.abc.Stream = tcp_stream
        remote = peer_address(tcp_stream) if remote_address is None else remote_address
        ws = None
        http2: bytes | None = None  # over HTTP/2: the bytes read already
        try:
            try:
                # The connection's nursery from its first byte: its one cancel scope is the
                # handshake's (cut off at open_timeout, or by aclose) until the 101 is sent,
                # and then the connection's. (`open_nursery_unwrapped()` written out: its
                # generator would cost every connection a few microseconds.)
                async with trio.open_nursery() as nursery:
                    scope = nursery.cancel_scope
                    opening = self._begin_handshake(scope)
                    try:
                        first = b""
                        if self._ssl_context is not None:
                            stream = ssl_stream = trio.SSLStream(
                                tcp_stream, self._ssl_context, server_side=True
                            )
                            if self.config.http2:
                                await ssl_stream.do_handshake()
                                if ssl_stream.selected_alpn_protocol() == "h2":
                                    http2 = b""
                        elif self.config.http2_cleartext:
                            first = await _first_bytes(stream)
                            if first.startswith(PREFACE):
                                http2 = first
                        if http2 is None:
                            ws = await self._handshake(stream, remote, first)
                    finally:  # also when the client reset the connection mid-handshake
                        self.handshakes.end(opening)
                    del opening  # not held for the connection's life
                    if http2 is not None:
                        await self._serve_http2(stream, remote, http2)
                    elif ws is not None:
                        await self._run_handler(ws, nursery)
            except BaseExceptionGroup as group:
                raise_unwrapped(group)
            if scope.cancelled_caught:
                self._log_cancelled(remote, ws)
        except _CONNECTION_ERRORS as exc:
            self.logger.debug("connection from %s failed: %r", remote, exc)
        except Exception:
            self.logger.exception("unexpected error on a connection from %s", remote)
        finally:
            if ws is None or ws.state is not State.CLOSED:  # else the connection closed it already
                await trio.aclose_forcefully(stream)

    def _begin_handshake(self, scope: trio.CancelScope) -> Opening:
        """An opening handshake begins in `scope` (a connection's, or an HTTP/2 stream's):
        cut off at open_timeout, or by aclose(), already if the server is closing."""
        opening = self.handshakes.begin(scope)
        if self._closing:
            scope.cancel()
        return opening

    def _log_cancelled(self, remote: Any, ws: WebSocket | None) -> None:
        """A connection's scope was cancelled: in its handshake (stopped, or timed out), or
        after it, when its handler outlived the close by aclose()."""
        if ws is not None:
            ws.logger.warning("handler cancelled: still running after its connection closed")
        elif self._closing:
            self.logger.debug("dropped a handshake from %s: stopping", remote)
        else:
            self.logger.info(
                "opening handshake from %s timed out after %ss", remote, self.config.open_timeout
            )

    async def _handshake(self, stream: trio.abc.Stream, remote: Any, first: bytes) -> WebSocket | None:
        """Read the request from `remote` (after the bytes `first`, read already) and
        answer it; the upgraded `WebSocket`, or None."""
        handshake = self._new_handshake()
        request = None
        if first:
            handshake.receive_data(first)
        try:
            while request is None:
                request = handshake.next_request(remote)
                if request is None:
                    handshake.receive_data(await receive_some(stream))
        except EOFError:
            return None
        except RejectHandshake as rejection:
            self._log_answer(remote, None, rejection.response.status)
            await send_all(stream, handshake.send_response(rejection.response))
            self.counts.answered(rejection.response.status)
            return None
        if self._ssl_context is not None:
            request.scheme = "wss"
        self._believe_proxy(remote, request)
        if self._metrics_response is not None and request.path_only == METRICS_PATH:
            await send_all(stream, handshake.send_response(self._metrics_response()))
            return None  # not a handshake: not counted
        response = await self._respond(handshake, request)
        # Cancelled meanwhile (aclose, or open_timeout) with no checkpoint since: no answer,
        # and above all no 101, once the connection's scope can no longer be its own.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._log_answer(request.remote_address, request, response.status)
        with self._counted_answer(response.status):
            await send_all(stream, handshake.send_response(response))
        if response.status != 101:
            return None
        return self._upgraded_websocket(
            transport_for(stream), handshake, request, response, handshake.trailing_data
        )

    def _counted_answer(self, status: int) -> CountedAnswer:
        """Around sending an answer: a 101 counts against `max_connections` from before it
        is sent (so that concurrent handshakes respect the limit), and no longer if sending
        fails; once sent, the answer is counted (every 101 counted ends counted closed)."""
        return CountedAnswer(self, status)

    def _upgraded_websocket(
        self,
        transport: Transport,
        handshake: ServerHandshake,
        request: Request,
        response: Response,
        initial_data: bytes = b"",
    ) -> WebSocket:
        """The server's connection once its 101 is sent, over either HTTP version."""
        deflate = handshake.deflate if "Sec-WebSocket-Extensions" in response.headers else None
        return new_websocket(
            transport,
            Role.SERVER,
            self.config,
            request=request,
            response=response,
            deflate=deflate,
            initial_data=initial_data,
            on_closed=self.connections.discard,
            stats=self.counts,
        )

    def _believe_proxy(self, remote: Any, request: Request) -> None:
        """A trusted proxy says who the client is, and how it came."""
        if self._trusted is not None:
            forwarded = self._trusted.client_of(remote, request.headers)
            if forwarded is not None:
                request.remote_address = forwarded.remote_address
                if forwarded.scheme is not None:
                    request.scheme = "wss" if forwarded.scheme in ("https", "wss") else "ws"

    async def _serve_http2(self, stream: trio.abc.Stream, remote: Any, first: bytes) -> None:
        """An HTTP/2 connection from `remote`: each stream a request, a WebSocket (RFC 8441)
        or not."""
        from .http2_connection import Http2Connection

        connection = Http2Connection(
            stream,
            client=False,
            limits=self.config.http2_limits,
            logger=self.logger,
            close_timeout=self.config.close_timeout,
            first_stream_timeout=self.config.open_timeout,
            initial_data=first,
        )
        self._http2_connections.add(connection)
        if self.draining.is_set():
            connection.go_away()
        try:
            await connection.serve(functools.partial(self._serve_http2_stream, remote))
        finally:
            self._http2_connections.discard(connection)
            if connection.limit_passed is not None:
                closes = self.counts.http2_limit_closes
                closes[connection.limit_passed] = closes.get(connection.limit_passed, 0) + 1

    async def _serve_http2_stream(self, remote: Any, stream: Http2Stream) -> None:
        """One HTTP/2 request: answered as over HTTP/1.1 (`process_request`, the upgrade's
        checks, `process_response`), and if it upgrades, the handler runs on the stream.
        Its nursery and cancel scope serve as a TCP connection's do (`serve_stream`)."""
        handshake = self._new_handshake()
        request: Request | None = None
        ws = None
        try:
            async with trio.open_nursery() as nursery:
                scope = nursery.cancel_scope
                opening = self._begin_handshake(scope)
                try:
                    request = request_from_fields(stream.headers or [], remote, self._ssl_context is not None)
                    self._believe_proxy(remote, request)
                    if self._metrics_response is not None and request.path_only == METRICS_PATH:
                        response = self._metrics_response()
                    else:
                        response = await self._respond(handshake, request)
                except RejectHandshake as rejection:
                    response = rejection.response
                finally:
                    self.handshakes.end(opening)
                del opening
                await trio.lowlevel.checkpoint_if_cancelled()  # as in `_handshake`: no late 101
                self._log_answer(
                    remote if request is None else request.remote_address, request, response.status
                )
                fields = response_fields(response, server_header=self.config.server_header)
                connection = stream.connection
                if response.status != 101 or request is None:
                    no_body = not response.body or (request is not None and request.method == "HEAD")
                    with self._counted_answer(response.status):
                        connection.send_headers(stream, fields, end_stream=no_body)
                        if not no_body:
                            await stream.send_all(response.body)
                            connection.end_stream(stream)
                    if not stream.remote_ended:  # a request body nobody reads (RFC 9113 section 8.1)
                        connection.reset(stream, 0)
                    connection.release(stream)
                    return
                with self._counted_answer(101):
                    connection.send_headers(stream, fields)
                ws = self._upgraded_websocket(stream, handshake, request, response)
                await self._run_handler(ws, nursery)
        except BaseExceptionGroup as group:
            raise_unwrapped(group)
        if scope.cancelled_caught and ws is not None:  # else the stream is reset as this task ends
            self._log_cancelled(remote, ws)

    def _log_answer(self, client: Any, request: Request | None, status: int) -> None:
        """The access log's line for an HTTP answer: who, what (query redacted), status."""
        if access_logger.isEnabledFor(logging.INFO):
            what = (
                "-"
                if request is None
                else f"{request.method} {self._target(request.path)} HTTP/{request.http_version}"
            )
            access_logger.info('%s - "%s" %d', _client(client), what, status)

    def _target(self, path: str) -> str:
        return redacted_target(path) if self._redact else path

    async def _respond(self, handshake: ServerHandshake, request: Request) -> Response:
        """The answer to a request: process_request's, else the upgrade or its refusal."""
        response = None
        try:
            for process_request in self._request_hooks:
                if response is None:
                    response = await _maybe_await(process_request(request))
            if response is None:
                if self._closing:
                    response = Response(503, {"Retry-After": "1"}, "server shutting down\n")
                elif self._max_connections is not None and self._upgraded >= self._max_connections:
                    response = Response(
                        503, {"Retry-After": str(_RETRY_AFTER)}, "too many connections; try again later\n"
                    )
                else:
                    try:
                        response = handshake.accept(request)
                    except RejectHandshake as rejection:
                        response = rejection.response
            if self._process_response is not None:
                replaced = await _maybe_await(self._process_response(request, response))
                if replaced is not None:
                    response = replaced
        except Exception:
            self.logger.exception("process_request or process_response failed")
            response = Response(500, body="internal server error\n")
        if not isinstance(response, Response):
            self.logger.error("process_request returned %r, not a Response or None", response)
            response = Response(500, body="internal server error\n")
        return response

    async def _run_handler(self, ws: WebSocket, nursery: trio.Nursery) -> None:
        """The handler on an upgraded connection, whose tasks run in `nursery`."""
        self.connections.add(ws)
        opened_at = trio.current_time()
        if self.logger.isEnabledFor(logging.DEBUG):  # else no per-connection logger is built
            ws.logger.debug("connection open: %s", self._target(ws.path))
        try:
            async with running_in(ws, nursery, self.keepalive, self.reader_starts) as connection_scope:
                try:
                    # aclose() cancels the connection's own scope if the handler outlives its
                    # close: no scope of its own per handler.
                    self._handler_scopes.add(connection_scope)
                    try:
                        await self._handler(ws)
                    finally:
                        self._handler_scopes.discard(connection_scope)
                except ConnectionClosed as exc:
                    ws.logger.debug("handler ended on a closed connection: %s", exc)
                except Exception as exc:
                    if _only_connection_closed(exc):
                        ws.logger.debug("handler ended on a closed connection: %r", exc)
                    else:
                        ws.logger.exception("connection handler failed")
                        await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.connections.discard(ws)
            self._upgraded -= 1
            code = ws.close_code
            self.counts.closed(
                CloseCode.ABNORMAL_CLOSURE if code is None else code,
                ws.closed_by or "none",
                trio.current_time() - opened_at,
            )
            if self.logger.isEnabledFor(logging.DEBUG):
                ws.logger.debug("connection closed: code %s", ws.close_code)
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    '%s - "WebSocket %s" closed %s after %.2f s, %d bytes in, %d bytes out',
                    _client(ws.remote_address),
                    self._target(ws.path),
                    ws.close_code,
                    trio.current_time() - opened_at,
                    ws.bytes_received,
                    ws.bytes_sent,
                )


async def _first_bytes(stream: trio.abc.Stream) -> bytes:
    """What a cleartext client sends first, up to the length of the HTTP/2 preface or the
    first byte that differs from it (an HTTP/1.1 request differs at once)."""
    first = b""
    while len(first) < len(PREFACE) and PREFACE.startswith(first):
        data = await receive_some(stream)
        if not data:
            break
        first += data
    return first


def _client(address: Any) -> str:
    """ "host:port" for the access log ("[::1]:port" for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return "-" if address is None else str(address)


_CONNECTION_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _only_connection_closed(exc: BaseException) -> bool:
    """Whether `exc` is a ConnectionClosed, or a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        _matched, rest = exc.split(ConnectionClosed)
        return rest is None
    return isinstance(exc, ConnectionClosed)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def serve(
    handler: Handler | ServerConfig,
    host: str | None,
    port: int,
    *,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServeOptions],
) -> None:
    """Serve WebSocket connections with `handler` until cancelled or `aclose()`d.

    `handler` is an `async def handler(ws)`, a `Router`, or a `ServerConfig` carrying one
    with its options; `options` are `ServerConfig`'s fields, with its defaults (given with
    a configuration, they replace its values). Use it with `nursery.start(serve, handler,
    host, port)`, which returns the `WebSocketServer` once it listens. `host=None` listens
    on every address family the machine has; port 0 picks a free port (read it back from
    `server.port`).
    """
    config = configured(handler, options)  # a bad option fails here, before listening
    listeners = await open_listeners(host, port, backlog=config.backlog, reuse_port=config.reuse_port)
    await serve_listeners(config, listeners, task_status=task_status)


async def serve_listeners(
    config: ServerConfig,
    listeners: list[trio.SocketListener],
    *,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`serve` on listeners already open (sockets inherited from a supervisor, say): the
    hub of `config.hub` opens first, then `config.lifespan`, then the server accepts."""
    hub_context: AbstractAsyncContextManager[Hub | None] = nullcontext(None)
    if config.hub is not None:
        hub_context = open_hub(config.hub)
    try:
        async with hub_context as hub:
            await build_server(config, listeners, hub)._run(task_status)
    finally:
        for listener in listeners:  # also when the hub could not open
            listener.socket.close()


def build_server(
    config: ServerConfig, listeners: list[trio.SocketListener], hub: Hub | None = None
) -> WebSocketServer:
    """The server `config` describes, over `listeners`, which may be none (then feed it
    streams with `serve_stream`, and run its shared tasks with `start_timers`: keepalive
    pings, `open_timeout` and the readers' starts depend on them)."""
    return WebSocketServer(config, listeners, hub)


@asynccontextmanager
async def open_server(
    handler: Handler | ServerConfig, host: str | None, port: int, **options: Unpack[ServeOptions]
) -> AsyncIterator[WebSocketServer]:
    """`serve` as an async context manager; leaving the block calls `server.aclose()`.

    Takes the same handler or `ServerConfig` and the same keyword options as `serve`.
    """
    config = configured(handler, options)
    async with open_nursery_unwrapped() as nursery:
        server: WebSocketServer = await nursery.start(
            lambda task_status: serve(config, host, port, task_status=task_status)
        )
        yield server  # an exception here cancels the nursery: connections are dropped
        await server.aclose()


class CountedAnswer:
    """What `WebSocketServer._counted_answer` returns: a context manager written out (one
    per connection, and a generator-based one costs several times as much)."""

    __slots__ = ("_server", "_status")

    def __init__(self, server: WebSocketServer, status: int) -> None:
        self._server, self._status = server, status

    def __enter__(self) -> None:
        if self._status == 101:
            self._server._upgraded += 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self._server.counts.answered(self._status)
        elif self._status == 101:
            self._server._upgraded -= 1
