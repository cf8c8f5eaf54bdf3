"""`reconnect()`: a new connection after each drop, with back-off between failed attempts.

    async with trio_ws.reconnect(uri) as connections:
        async for ws in connections:
            ...  # use ws until it closes; the loop then connects again

Each connection, with its reader and keepalive, lives in a task of the block's own nursery,
so the loop body is free to open and close cancel scopes as it likes (an async generator
could not hold a nursery across a `yield`). Asking for the next connection closes the
previous one if it is still open; leaving the block closes the current one cleanly (1000).
"""

from __future__ import annotations

import datetime
import email.utils
import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Unpack

import trio

from .backoff import Backoff
from .client import connect
from .config import ClientConfig, ConnectOptions, client_configured
from .connection import WebSocket
from .exceptions import InvalidHandshake, InvalidRedirect
from .http import HeadersLike
from .tasks import open_nursery_unwrapped
from .uri import parse_uri, redacted

__all__ = [
    "reconnect",
    "Connections",
    "ProcessException",
    "Attempt",
    "AttemptTarget",
    "default_process_exception",
    "retry_after",
]

ProcessException = Callable[[Exception], Exception | None]
"""Decides what a failed attempt means: None to retry, or the exception to raise."""
AttemptTarget = str | tuple[str, HeadersLike]
"""What one attempt connects to: a URI, or a URI and the extra headers of that attempt."""
Attempt = Callable[[], AttemptTarget | Awaitable[AttemptTarget]]
"""Called before each attempt (plain or async): where to connect this time, e.g. with the position to
resume from or a fresh token in the query."""


def default_process_exception(exc: Exception) -> Exception | None:
    """Retry network errors, timeouts, an answer that is not HTTP, 5xx and 429; raise the rest.

    Any other HTTP status (403, 404...), a redirect that cannot be followed and a TLS
    failure are configuration errors, not outages: retrying would not help.
    """
    if isinstance(exc, InvalidRedirect):
        return exc
    if isinstance(exc, InvalidHandshake):
        if exc.status is None or exc.status >= 500 or exc.status == 429:
            return None
        return exc
    if isinstance(exc, ssl.SSLError):  # an OSError, but a certificate will not fix itself
        return exc
    if isinstance(exc, (OSError, TimeoutError, trio.BrokenResourceError)):
        return None
    return exc


def retry_after(exc: Exception) -> float | None:
    """The seconds a 429 or 503 answer's `Retry-After` asks for (a number or an HTTP date)."""
    value = exc.headers.get("Retry-After", "").strip() if isinstance(exc, InvalidHandshake) else ""
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


class Connections:
    """What `reconnect()` gives: `async for ws in connections` yields each new connection."""

    def __init__(self, receive: trio.MemoryReceiveChannel[WebSocket | Exception]) -> None:
        self._receive = receive
        self._released = trio.Event()  # the consumer is done with the current connection
        self._holding = False  # a connection is handed out (leaving closes it cleanly)
        self._attempt = trio.CancelScope()  # connecting or backing off (leaving cancels it)
        self._stopping = False
        self.opened = 0
        """How many connections were made so far."""

    def __aiter__(self) -> Connections:
        return self

    async def __anext__(self) -> WebSocket:
        self._released.set()  # the previous connection, if any, may go
        if self._stopping:
            raise StopAsyncIteration
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if isinstance(item, Exception):
            raise item
        return item

    def _hold(self) -> trio.Event:
        """A new connection is handed out: the event set when the consumer is done with it."""
        self._released = trio.Event()
        self._holding = True
        self.opened += 1
        return self._released

    def _new_attempt(self) -> trio.CancelScope:
        self._holding = False
        self._attempt = trio.CancelScope()
        return self._attempt

    def _stop(self) -> None:
        """Leaving the block: a connection handed out closes cleanly, an attempt stops now."""
        self._stopping = True
        self._released.set()
        if not self._holding:
            self._attempt.cancel()


@asynccontextmanager
async def reconnect(
    uri: str | Attempt,
    config: ClientConfig | None = None,
    *,
    initial_delay: float = 1.0,
    max_delay: float = 30.0,
    process_exception: ProcessException | None = None,
    **connect_options: Unpack[ConnectOptions],
) -> AsyncIterator[Connections]:
    """Connect to `uri` again after each drop, with `connect()`'s options: a `config`,
    keyword options, or both. A bad option fails here, before the first attempt.

    `uri` may instead be a function (plain or async) called before each attempt, giving
    the URI, or `(uri, extra_headers)`, of that attempt: a client that resumes puts its
    latest position there, and a client whose token expires puts a fresh one. What it
    raises goes through `process_exception` like a failed attempt.

    Failed attempts are spaced by a back-off that doubles from `initial_delay` up to
    `max_delay`, each delay drawn from half to all of the current step; a connection that
    stayed open for `max_delay` resets it. A `Retry-After` header (429, 503) is honoured,
    up to `max_delay`. `process_exception(exc)` returns None to retry or an exception to
    raise from the loop; the default is `default_process_exception`. Every retry is
    logged with its delay and cause.
    """
    if isinstance(uri, str):
        parse_uri(uri)  # a bad URI fails here, not in the first attempt
    elif not callable(uri):
        raise TypeError(f"reconnect() takes a URI or a function giving one, not {uri!r}")
    options = client_configured(config, connect_options)
    backoff = Backoff(initial_delay, max_delay)  # checks the delays
    decide = process_exception or default_process_exception
    logger = options.logger or logging.getLogger("trio_ws.client")

    def shown(target: str) -> str:
        return redacted(target) if options.redact_logs else target

    send, receive = trio.open_memory_channel[WebSocket | Exception](0)
    connections = Connections(receive)

    async def keep_connecting() -> None:
        async with send:
            while not connections._stopping:
                with connections._new_attempt():
                    target = uri if isinstance(uri, str) else "(not known yet)"
                    try:
                        target, attempt_options = await _attempt(uri, options)
                        held = await _connect_once(target, attempt_options, send, connections)
                    except Exception as exc:
                        decision = decide(exc)
                        if decision is not None:
                            await send.send(decision)
                            return
                        asked = retry_after(exc)
                        delay = min(backoff.next_delay() if asked is None else asked, max_delay)
                        logger.warning(
                            "could not connect to %s (%s); retrying in %.2f s",
                            shown(target),
                            _why(exc),
                            delay,
                        )
                        await trio.sleep(delay)
                        continue
                    connections._holding = False  # closed: backing off can be cancelled again
                    if connections._stopping:
                        return
                    if held >= max_delay:
                        backoff.reset()  # it stayed up: the next failure starts from the beginning
                    delay = backoff.next_delay()
                    logger.info("connection to %s ended; reconnecting in %.2f s", shown(target), delay)
                    await trio.sleep(delay)

    async with open_nursery_unwrapped() as nursery:
        nursery.start_soon(keep_connecting)
        try:
            yield connections
        finally:
            connections._stop()


async def _attempt(uri: str | Attempt, options: ClientConfig) -> tuple[str, ClientConfig]:
    """The URI and options of the next attempt."""
    if isinstance(uri, str):
        return uri, options
    target = uri()
    if inspect.isawaitable(target):
        target = await target
    if isinstance(target, tuple):
        target, headers = target
        options = options.replace(extra_headers=headers)
    if not isinstance(target, str):
        raise TypeError(f"reconnect()'s function must give a URI or (URI, headers), not {target!r}")
    parse_uri(target)
    return target, options


async def _connect_once(
    uri: str,
    options: ClientConfig,
    send: trio.MemorySendChannel[WebSocket | Exception],
    connections: Connections,
) -> float:
    """Open one connection, hand it out, and keep it until the consumer is done with it;
    returns how long it was held. Leaving `connect()` closes it (1000) if still open."""
    async with connect(uri, options) as ws:
        released = connections._hold()
        opened_at = trio.current_time()
        await send.send(ws)
        await released.wait()
        return trio.current_time() - opened_at


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
