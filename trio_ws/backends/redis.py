"""`RedisBackend`: carry a hub's publishes between processes over Redis pub/sub.

Speaks RESP over Trio TCP streams and parses replies with hiredis's sans-I/O `Reader`
(install with `pip install trio-ws[redis]`). One connection listens (SUBSCRIBE), another
publishes. A topic is subscribed in Redis only while some local subscriber wants it. If
Redis goes away, local subscribers keep being served; the listener reconnects with back-off
and jitter and resubscribes, and publishes that could not reach Redis meanwhile are counted
and logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any

import trio

from ..protocol import Data

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["RedisBackend"]

logger = logging.getLogger("trio_ws.redis")
_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)


def _command(*args: bytes | str) -> bytes:
    """A RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection:
    """One RESP connection: send commands, read replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        import hiredis  # an optional dependency: the redis extra

        self.stream = stream
        self._reader = hiredis.Reader()
        self._error_type = hiredis.ReplyError

    async def send(self, *args: bytes | str) -> None:
        await self.stream.send_all(_command(*args))

    async def reply(self) -> Any:
        """The next reply; raises ConnectionError on EOF or an error reply."""
        while (reply := self._reader.gets()) is False:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._reader.feed(data)  # type: ignore[arg-type]  # any buffer will do
        if isinstance(reply, self._error_type):
            raise ConnectionError(f"Redis answered with an error: {reply}")
        return reply

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def redacted(url: str) -> str:
    """`url` with its password replaced by ***, for messages and logs."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    user = parsed.username or ""
    host = parsed.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{user}:***@{host}"))


class RedisBackend:
    """Redis pub/sub for `open_hub(backend=RedisBackend("redis://127.0.0.1:6379/0"))`.

    The URL follows the Redis scheme: `redis://[[user]:password@]host[:port][/db]`, or
    `rediss://` for TLS (verified with `ssl_context`, by default the system's CAs). A user
    logs in with `AUTH user password` (Redis 6 ACLs), a password alone with `AUTH password`;
    a db other than 0 is selected on each connection. The password never appears in a
    message or a log line: `url` holds the URL with it redacted.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        channel_prefix: str = "trio_ws:",
        timeout: float = 2.0,
        max_backoff: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        try:
            parsed = urllib.parse.urlsplit(url)
            port = parsed.port
        except ValueError as exc:
            raise ValueError(f"{redacted(url)!r} is not a valid Redis URL: {exc}") from None
        path = parsed.path.strip("/")
        db_ok = not path or (path.isascii() and path.isdigit())
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname or not db_ok:
            raise ValueError(
                f"{redacted(url)!r} is not a Redis URL: "
                "redis://[[user]:password@]host[:port][/db], or rediss:// for TLS"
            )
        if ssl_context is not None and parsed.scheme != "rediss":
            raise ValueError("ssl_context is for rediss:// URLs")
        #: The URL, with its password (if any) redacted.
        self.url = redacted(url)
        self._host = parsed.hostname
        self._port = port or 6379
        self._username = urllib.parse.unquote(parsed.username) if parsed.username else None
        self._password = urllib.parse.unquote(parsed.password) if parsed.password else None
        self._db = int(path or 0)
        self._ssl_context = (
            (ssl_context or ssl.create_default_context()) if parsed.scheme == "rediss" else None
        )
        self._prefix = channel_prefix
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._origin = os.urandom(8).hex().encode()  # to skip our own publishes coming back
        self._wanted: set[str] = set()
        self._confirmed: dict[str, trio.Event] = {}
        self._listener: _Connection | None = None
        self._listener_lock = trio.Lock()
        self._publisher: _Connection | None = None
        self._publisher_lock = trio.Lock()
        self._publisher_retry_at = 0.0
        self._publisher_backoff = 0.05  # doubled by each failed attempt, up to max_backoff
        self._outage = 0  # publishes that reached only this process since Redis was lost
        #: Publishes that could not be carried to Redis (so to the other processes).
        self.undelivered = 0
        #: Messages from Redis that were skipped as malformed (see `_received`).
        self.rejected = 0

    # ---- connections -----------------------------------------------------------------

    async def _connect(self) -> _Connection:
        """A connection that is logged in and on the right db."""
        with trio.fail_after(self._timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            if self._ssl_context is not None:
                stream = trio.SSLStream(stream, self._ssl_context, server_hostname=self._host)
            connection = _Connection(stream)
            try:
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                if self._password is not None:
                    login = (self._username, self._password) if self._username else (self._password,)
                    await connection.send("AUTH", *login)
                    await connection.reply()
                if self._db:
                    await connection.send("SELECT", str(self._db))
                    await connection.reply()
            except BaseException:
                await connection.aclose()
                raise
        return connection

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then listen for publishes from other processes until cancelled."""
        try:
            listener = await self._connect()
            self._publisher = await self._connect()
        except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
            raise ConnectionError(f"cannot reach Redis at {self.url}: {exc or type(exc).__name__}") from exc
        task_status.started()
        backoff = 0.1
        try:
            while True:
                try:
                    await self._listen(listener, hub)
                except _STREAM_ERRORS as exc:
                    logger.warning("lost the Redis connection at %s (%s); reconnecting", self.url, exc)
                await self._drop_listener()
                while True:
                    await trio.sleep(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, self._max_backoff)
                    try:
                        listener = await self._connect()
                    except (*_STREAM_ERRORS, trio.TooSlowError):
                        continue
                    logger.info(
                        "reconnected to Redis at %s; resubscribing %d topics", self.url, len(self._wanted)
                    )
                    backoff = 0.1
                    break
        finally:
            await self._drop_listener()
            if self._publisher is not None:
                await self._publisher.aclose()

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        for topic in self._wanted:  # to be confirmed again after reconnecting
            self._confirmed[topic] = trio.Event()
        if listener is not None:
            await listener.aclose()

    async def _listen(self, listener: _Connection, hub: Hub) -> None:
        async with self._listener_lock:
            self._listener = listener
            if self._wanted:
                await listener.send("SUBSCRIBE", *(self._prefix + topic for topic in self._wanted))
        prefix = self._prefix.encode()
        while True:
            reply = await listener.reply()
            kind = reply[0]
            if kind == b"message":
                topic = reply[1][len(prefix) :].decode("utf-8", "replace")
                self._received(hub, topic, reply[2])
            elif kind == b"subscribe":
                event = self._confirmed.get(reply[1][len(prefix) :].decode())
                if event is not None:
                    event.set()

    def _received(self, hub: Hub, topic: str, payload: object) -> None:
        """Deliver a message another process published; anything malformed is skipped.

        Whatever arrives from Redis is untrusted: any client of that Redis can publish on
        our channels. A payload that is not ours in form is counted in `rejected`, logged
        and dropped; it never reaches the hub, and never ends the listener.
        """
        if not isinstance(payload, bytes) or len(payload) < 17:
            self._reject(topic, "a payload too short to carry its origin and kind")
            return
        origin, kind, data = payload[:16], payload[16:17], payload[17:]
        if origin == self._origin:
            return  # ours: already delivered locally
        if kind == b"b":
            hub.deliver_locally(topic, data)
        elif kind == b"t":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._reject(topic, "a text message that is not valid UTF-8")
                return
            hub.deliver_locally(topic, text)
        else:
            self._reject(topic, f"an unknown kind {kind!r}")

    def _reject(self, topic: str, why: str) -> None:
        self.rejected += 1
        if self.rejected & (self.rejected - 1):
            return  # logged at the 1st, 2nd, 4th, 8th...: a flood of them cannot flood the log
        logger.warning(
            "skipped %s on the Redis channel of topic %r (%d skipped so far)", why, topic, self.rejected
        )

    # ---- what the hub calls ----------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        """Subscribe in Redis; returns once Redis confirmed (at once if it is unreachable)."""
        self._wanted.add(topic)
        event = self._confirmed.setdefault(topic, trio.Event())
        async with self._listener_lock:
            if self._listener is None:
                logger.warning("Redis is unreachable: topic %r will be subscribed on reconnection", topic)
                return
            try:
                await self._listener.send("SUBSCRIBE", self._prefix + topic)
            except _STREAM_ERRORS:
                return  # the listener task notices and reconnects
        with trio.move_on_after(self._timeout):
            await event.wait()

    async def unsubscribe(self, topic: str) -> None:
        """Unsubscribe in Redis (no local subscriber wants `topic` any more)."""
        self._wanted.discard(topic)
        self._confirmed.pop(topic, None)
        async with self._listener_lock:
            if self._listener is not None:
                with contextlib.suppress(*_STREAM_ERRORS):
                    await self._listener.send("UNSUBSCRIBE", self._prefix + topic)

    async def publish(self, topic: str, message: Data) -> None:
        """PUBLISH to Redis; on failure count and log it, never raise.

        A publish that finds its connection dead (Redis restarted, or closed it for being
        idle) is retried once on a fresh connection. While Redis stays unreachable, a new
        connection is tried at most once per back-off period, however often the
        application publishes, and the outage is logged when it starts and when it ends.
        """
        kind = b"t" if isinstance(message, str) else b"b"
        data = message.encode() if isinstance(message, str) else bytes(message)
        payload = self._origin + kind + data
        async with self._publisher_lock:
            for attempt in range(2):
                had_connection = self._publisher is not None
                try:
                    publisher = await self._publisher_connection()
                    with trio.fail_after(self._timeout):
                        await publisher.send("PUBLISH", self._prefix + topic, payload)
                        await publisher.reply()
                except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
                    if self._publisher is not None:
                        await self._publisher.aclose()
                        self._publisher = None
                    if attempt == 0 and had_connection:
                        continue  # it was stale: once more, on a fresh connection
                    self._undelivered_now(exc)
                    return
                if self._outage:
                    logger.info(
                        "publishing to Redis at %s again; %d publishes reached only this process meanwhile",
                        self.url,
                        self._outage,
                    )
                    self._outage = 0
                return

    async def _publisher_connection(self) -> _Connection:
        """The publishing connection, connecting if there is none and the back-off allows."""
        if self._publisher is not None:
            return self._publisher
        now = trio.current_time()
        if now < self._publisher_retry_at:
            raise ConnectionError("reconnecting")
        try:
            self._publisher = await self._connect()
        except (*_STREAM_ERRORS, trio.TooSlowError):
            # Only a failed attempt moves the next one: publishing faster than the back-off
            # must not keep postponing the reconnection.
            self._publisher_backoff = min(self._publisher_backoff * 2, self._max_backoff)
            self._publisher_retry_at = now + self._publisher_backoff * random.uniform(0.5, 1.0)
            raise
        self._publisher_backoff = 0.05
        return self._publisher

    def _undelivered_now(self, exc: BaseException) -> None:
        self.undelivered += 1
        self._outage += 1
        if self._outage == 1:
            logger.warning(
                "could not publish to Redis at %s (%s): publishes reach only this process until it is back",
                self.url,
                exc or type(exc).__name__,
            )
