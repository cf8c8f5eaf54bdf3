"""`RedisBackend`: carry a hub's publishes between processes over Redis pub/sub.

One connection listens (SUBSCRIBE), another publishes; both speak RESP (`resp`). A topic is
subscribed in Redis only while some local subscriber wants it. If Redis goes away, local
subscribers keep being served: both connections come back with back-off and jitter, on
time, however often the application publishes, and the listener resubscribes. A silent
connection is found out by a health check (PING). Publishes are numbered per topic
(`sequence`), so a receiver counts the ones it missed and drops any it already has.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any

import trio

from ..backoff import Backoff
from ..protocol import Data
from ..uri import redacted
from .resp import ReplyTooLarge, RespConnection
from .sequence import ORIGIN_SIZE, GapTracker, Numbering

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["RedisBackend", "redacted"]

logger = logging.getLogger("trio_ws.redis")
_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)
_NUMBER_SIZE = 8
_HEADER_SIZE = ORIGIN_SIZE + 1 + _NUMBER_SIZE  # origin, kind (b"t" or b"b"), number
_REPLY_SLACK = 65536  # room in a reply for the channel name and RESP framing
_FIRST_BACKOFF = 0.05  # seconds before the first reconnection attempt


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class RedisBackend:
    """Redis pub/sub for `open_hub(backend=RedisBackend("redis://127.0.0.1:6379/0"))`.

    The URL follows the Redis scheme: `redis://[[user]:password@]host[:port][/db]`, or
    `rediss://` for TLS (verified with `ssl_context`, by default the system's CAs). A user
    logs in with `AUTH user password` (Redis 6 ACLs), a password alone with `AUTH password`;
    a db other than 0 is selected on each connection. The password never appears in a
    message or a log line: `url` holds the URL with it redacted.

    `timeout` bounds connecting and each command's reply. A connection silent for
    `health_check_interval` seconds is dead: the listener PINGs once it has been silent for
    half of that, and the publisher PINGs before using a connection idle for that long.
    Reconnection waits double from 50 ms up to `max_backoff`. A message larger than
    `max_message_size` bytes is neither published to nor accepted from Redis.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        channel_prefix: str = "trio_ws:",
        timeout: float = 2.0,
        max_backoff: float = 1.0,
        health_check_interval: float = 5.0,
        max_message_size: int = 2**24,
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
        for name, value in [("timeout", timeout), ("health_check_interval", health_check_interval)]:
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not max_backoff >= _FIRST_BACKOFF:
            raise ValueError(
                f"max_backoff must be at least {_FIRST_BACKOFF} s (the first wait), not {max_backoff!r}"
            )
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be at least 1 byte, not {max_message_size!r}")
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
        self._health_check_interval = health_check_interval
        self.max_message_size = max_message_size
        self._numbering = Numbering()
        self._gaps = GapTracker()
        self._wanted: set[str] = set()
        self._confirmed: dict[str, trio.Event] = {}
        self._listener: RespConnection | None = None
        self._listener_lock = trio.Lock()
        self._missed_logged = False  # on this listener connection
        self._publisher: RespConnection | None = None
        self._publisher_lock = trio.Lock()
        self._publisher_retry_at = 0.0
        self._publisher_backoff = Backoff(_FIRST_BACKOFF, max_backoff)
        self._outage = 0  # publishes that reached only this process since Redis was lost
        #: Publishes from this process that may not have reached Redis (so the others).
        self.undelivered = 0
        #: Publishes from other processes that this one's listener missed (gaps in numbering).
        self.missed = 0
        #: Messages from Redis that were skipped as malformed or oversized.
        self.rejected = 0

    # ---- connections -----------------------------------------------------------------

    async def _connect(self) -> RespConnection:
        """A connection that is logged in and on the right db."""
        with trio.fail_after(self._timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            if self._ssl_context is not None:
                stream = trio.SSLStream(stream, self._ssl_context, server_hostname=self._host)
            connection = RespConnection(stream, self.max_message_size + _HEADER_SIZE + _REPLY_SLACK)
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
            raise ConnectionError(f"cannot reach Redis at {self.url}: {_why(exc)}") from exc
        task_status.started()
        backoff = Backoff(_FIRST_BACKOFF, self._max_backoff)
        try:
            while True:
                try:
                    await self._listen(listener, hub)
                except ReplyTooLarge:
                    self._reject("?", f"a message larger than max_message_size ({self.max_message_size})")
                except _STREAM_ERRORS as exc:
                    logger.warning("lost the Redis connection at %s (%s); reconnecting", self.url, _why(exc))
                await self._drop_listener()
                listener = await self._reconnect(backoff)
                logger.info(
                    "reconnected to Redis at %s; resubscribing %d topics", self.url, len(self._wanted)
                )
        finally:
            await self._drop_listener()
            await self._drop_publisher()

    async def _reconnect(self, backoff: Backoff) -> RespConnection:
        """Try again and again, with back-off, until a connection is made."""
        while True:
            await trio.sleep(backoff.next_delay())
            try:
                connection = await self._connect()
            except (*_STREAM_ERRORS, trio.TooSlowError):
                continue
            backoff.reset()
            return connection

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        for topic in self._wanted:  # to be confirmed again after reconnecting
            self._confirmed[topic] = trio.Event()
        if listener is not None:
            await listener.aclose()

    async def _drop_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.aclose()

    async def _listen(self, listener: RespConnection, hub: Hub) -> None:
        """Deliver what the listener receives; a connection silent too long is dead."""
        async with self._listener_lock:
            self._listener = listener
            self._missed_logged = False
            if self._wanted:
                await listener.send("SUBSCRIBE", *(self._prefix + topic for topic in self._wanted))
        pinged = False
        while True:
            silence = self._health_check_interval if pinged else self._health_check_interval / 2
            with trio.move_on_at(listener.last_received_at + silence):
                self._handle(hub, await listener.reply())
                pinged = False
                continue
            if pinged:
                raise ConnectionError(f"no answer to a PING within {self._health_check_interval / 2:g} s")
            async with self._listener_lock:
                await listener.send("PING")
            pinged = True

    def _handle(self, hub: Hub, reply: Any) -> None:
        """One reply on the listener: a message, a subscription confirmed, or a pong."""
        if not isinstance(reply, list) or len(reply) < 2 or not isinstance(reply[1], bytes):
            return  # not a push Redis sends in subscribed mode: nothing for us
        kind = reply[0]
        prefix = len(self._prefix)
        if kind == b"message" and len(reply) == 3:
            self._received(hub, reply[1][prefix:].decode("utf-8", "replace"), reply[2])
        elif kind == b"subscribe":
            event = self._confirmed.get(reply[1][prefix:].decode("utf-8", "replace"))
            if event is not None:
                event.set()

    def _received(self, hub: Hub, topic: str, payload: object) -> None:
        """Deliver a message another process published; anything malformed is skipped.

        Whatever arrives from Redis is untrusted: any client of that Redis can publish on
        our channels. A payload that is not ours in form is counted in `rejected`, logged
        and dropped; it never reaches the hub, and never ends the listener.
        """
        if not isinstance(payload, bytes) or len(payload) < _HEADER_SIZE:
            self._reject(topic, "a payload too short to carry its origin, kind and number")
            return
        if len(payload) > _HEADER_SIZE + self.max_message_size:
            self._reject(topic, f"a message larger than max_message_size ({self.max_message_size})")
            return
        origin, kind = payload[:ORIGIN_SIZE], payload[ORIGIN_SIZE : ORIGIN_SIZE + 1]
        number = int.from_bytes(payload[ORIGIN_SIZE + 1 : _HEADER_SIZE], "big")
        if self._numbering.is_own(origin):
            return  # ours: already delivered locally
        message: Data
        if kind == b"b":
            message = payload[_HEADER_SIZE:]
        elif kind == b"t":
            try:
                message = payload[_HEADER_SIZE:].decode("utf-8")
            except UnicodeDecodeError:
                self._reject(topic, "a text message that is not valid UTF-8")
                return
        else:
            self._reject(topic, f"an unknown kind {kind!r}")
            return
        missed = self._gaps.check(topic, origin, number)
        if missed is None:
            return  # a publish retried after Redis took it the first time: we have it
        if missed:
            self._missed_now(topic, missed)
        hub.deliver_locally(topic, message)

    def _missed_now(self, topic: str, count: int) -> None:
        self.missed += count
        if not self._missed_logged:  # once per listener connection: once per outage
            self._missed_logged = True
            logger.warning(
                "missed %d publishes from another process on topic %r while the Redis listener was "
                "down (%d missed so far)",
                count,
                topic,
                self.missed,
            )

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
        self._gaps.forget(topic)
        async with self._listener_lock:
            if self._listener is not None:
                with contextlib.suppress(*_STREAM_ERRORS):
                    await self._listener.send("UNSUBSCRIBE", self._prefix + topic)

    async def publish(self, topic: str, message: Data) -> None:
        """PUBLISH to Redis; on failure count and log it, never raise.

        A publish that finds its connection dead (Redis restarted, or closed it for being
        idle) is retried once on a fresh connection, under the same number, so that a
        receiver drops it if Redis had taken the first attempt after all. While Redis stays
        unreachable, a new connection is tried at most once per back-off period, however
        often the application publishes, and the outage is logged when it starts and ends.
        A publish cancelled before Redis confirmed it is counted in `undelivered` too.
        """
        data = message.encode() if isinstance(message, str) else bytes(message)
        if len(data) > self.max_message_size:
            self._undelivered_now(ValueError(f"a message of {len(data)} bytes, over max_message_size"))
            return
        kind = b"t" if isinstance(message, str) else b"b"
        async with self._publisher_lock:
            number = self._numbering.next_number(topic)
            payload = b"".join([self._numbering.origin, kind, number.to_bytes(_NUMBER_SIZE, "big"), data])
            error: BaseException | None = None
            sent = False
            try:
                for _ in range(2):
                    try:
                        publisher, fresh = await self._publisher_connection()
                    except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
                        error = exc
                        break
                    try:
                        with trio.fail_after(self._timeout):
                            await publisher.send("PUBLISH", self._prefix + topic, payload)
                            sent = True
                            await publisher.reply()
                    except trio.TooSlowError as exc:  # no answer: Redis may have taken it or not
                        await self._drop_publisher()
                        error = exc
                        break
                    except _STREAM_ERRORS as exc:
                        await self._drop_publisher()
                        error = exc
                        if fresh:
                            break
                        continue  # it was stale: once more, on a fresh connection
                    error = None
                    break
            except BaseException:  # cancelled before Redis confirmed: counted, never silent
                if sent:
                    self._numbering.consume(topic)
                self.undelivered += 1
                await self._drop_publisher()  # it may owe a reply, which the next command would take
                raise
            if sent:  # Redis may have it: the next publish must not reuse its number
                self._numbering.consume(topic)
            if error is not None:
                self._undelivered_now(error)
            elif self._outage:
                logger.info(
                    "publishing to Redis at %s again; %d publishes reached only this process meanwhile",
                    self.url,
                    self._outage,
                )
                self._outage = 0

    async def _publisher_connection(self) -> tuple[RespConnection, bool]:
        """A publishing connection that answers, and whether it was just made.

        One idle for `health_check_interval` is PINGed first. A new one is made only when
        the back-off allows; only a failed attempt moves the next one, so publishing faster
        than the back-off cannot keep postponing the reconnection.
        """
        publisher = self._publisher
        if publisher is not None:
            if trio.current_time() - publisher.last_received_at < self._health_check_interval:
                return publisher, False
            try:
                with trio.fail_after(self._timeout):
                    await publisher.send("PING")
                    await publisher.reply()
                return publisher, False
            except (*_STREAM_ERRORS, trio.TooSlowError):
                await self._drop_publisher()
        now = trio.current_time()
        if now < self._publisher_retry_at:
            raise ConnectionError("reconnecting")
        try:
            self._publisher = await self._connect()
        except (*_STREAM_ERRORS, trio.TooSlowError):
            self._publisher_retry_at = now + self._publisher_backoff.next_delay()
            raise
        self._publisher_backoff.reset()
        return self._publisher, True

    def _undelivered_now(self, exc: BaseException) -> None:
        self.undelivered += 1
        self._outage += 1
        if self._outage == 1:
            logger.warning(
                "could not publish to Redis at %s (%s): publishes reach only this process until it is back",
                self.url,
                _why(exc),
            )
