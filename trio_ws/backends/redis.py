"""`RedisBackend`: carry a hub's publishes between processes over Redis pub/sub.

One connection listens (SUBSCRIBE, or SSUBSCRIBE on a cluster's primary: `sharding`),
another publishes, pipelined (`pipeline`); both speak RESP (`resp`). A topic is subscribed
in Redis only while some local subscriber wants it. If Redis goes away, local subscribers
keep being served: both connections come back with back-off and jitter, on time, however
often the application publishes, and the listener resubscribes. A silent connection is
found out by a health check (PING). Plain publishes are numbered per topic (`sequence`), so
a receiver counts the ones it missed and drops any it already has. With history, a Lua
script gives each publication its offset and keeps it in a Redis Stream (`streams`);
presence is kept in Redis too (`presence`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import ssl
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..backoff import Backoff
from ..counters import SECONDS, Histogram, Snapshot
from ..history import Publication, StreamPosition, new_epoch
from ..messages import Data
from ..tasks import open_nursery_unwrapped
from ..topics import check_topic
from ..uri import redacted
from .pipeline import OnReply, Pipeline
from .presence import JOIN, LEAVE, MEMBERS, members_of, presence_keys
from .resp import NO_REPLY, ErrorReply, ReplyTooLarge, RespConnection
from .sequence import ORIGIN_SIZE, GapTracker, Numbering
from .sharding import PLAIN, SHARDED
from .streams import (
    APPEND,
    HISTORY_MARK,
    POSITION,
    READ,
    MalformedPublication,
    decode_entries,
    decode_publication,
    encode_publication,
    history_keys,
    position_of,
    read_reply,
)

if TYPE_CHECKING:
    from ..hub_backend import Receiver

__all__ = ["RedisBackend", "redacted", "SCRIPTS"]

logger = logging.getLogger("trio_ws.redis")
_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)
_NUMBER_SIZE = 8
_HEADER_SIZE = ORIGIN_SIZE + 1 + _NUMBER_SIZE  # origin, kind (b"t" or b"b"), number
_REPLY_SLACK = 65536  # room in a reply for the channel name and RESP framing
_FIRST_BACKOFF = 0.05  # seconds before the first reconnection attempt
#: Our Lua scripts by name (loaded on every new publishing connection).
SCRIPTS = {
    "APPEND": APPEND,
    "POSITION": POSITION,
    "READ": READ,
    "JOIN": JOIN,
    "LEAVE": LEAVE,
    "MEMBERS": MEMBERS,
}


def _is_moved(error: BaseException) -> bool:
    """Whether an error reply says the key's slot is served by another cluster node."""
    text = str(error)
    return " MOVED " in text or " ASK " in text or text.startswith(("MOVED ", "ASK "))


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _ttl_ms(ttl: float | None) -> str:
    """A history ttl as the scripts take it: milliseconds, "0" for none."""
    return "0" if ttl is None else str(max(1, round(ttl * 1000)))


def _fields(position: StreamPosition) -> tuple[int, str]:
    return position.offset, position.epoch


class RedisBackend:
    """Redis pub/sub for `open_hub(backend=RedisBackend("redis://127.0.0.1:6379/0"))`.

    The URL follows the Redis scheme: `redis://[[user]:password@]host[:port][/db]`, or
    `rediss://` for TLS (verified with `ssl_context`, by default the system's CAs). A user
    logs in with `AUTH user password` (Redis 6 ACLs), a password alone with `AUTH password`;
    a db other than 0 is selected on each connection. The password never appears in a
    message or a log line: `url` holds the URL with it redacted.

    `timeout` bounds connecting and each command's reply. A connection silent for
    `health_check_interval` seconds is dead: the listener PINGs once it has been silent for
    half of that, and so does the publisher. Reconnection waits double from 50 ms up to
    `max_backoff`. A message larger than `max_message_size` bytes is neither published to
    nor accepted from Redis. Publishes are pipelined: at most `max_in_flight` are sent and
    not yet answered on the publishing connection; past that, `publish` waits for answers.

    With `open_hub(history_size=N)`, each topic's positions and history live in Redis
    (see `streams`): every process gives offsets from one counter, and a subscriber of any
    process resumes with `since=`.

    `cluster_node` is for `RedisClusterBackend`, which makes one backend per primary: the
    id of the primary at `url`. It speaks sharded pub/sub (`sharding`), and history another
    primary wrote starts a new epoch. A MOVED answer or a channel Redis unsubscribed calls
    `on_moved`, if set, so that the cluster's slot map is read again.
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
        max_in_flight: int = 4096,
        presence_ttl: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        cluster_node: str | None = None,
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
        for name, value in [
            ("timeout", timeout),
            ("health_check_interval", health_check_interval),
            ("presence_ttl", presence_ttl),
        ]:
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not max_backoff >= _FIRST_BACKOFF:
            raise ValueError(
                f"max_backoff must be at least {_FIRST_BACKOFF} s (the first wait), not {max_backoff!r}"
            )
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be at least 1 byte, not {max_message_size!r}")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an int of at least 1, not {max_in_flight!r}")
        self.url = redacted(url)
        """The URL, with its password (if any) redacted."""
        self._host = parsed.hostname
        self._port = port or 6379
        self._username = urllib.parse.unquote(parsed.username) if parsed.username else None
        self._password = urllib.parse.unquote(parsed.password) if parsed.password else None
        self._db = int(path or 0)
        self._ssl_context = (
            (ssl_context or ssl.create_default_context()) if parsed.scheme == "rediss" else None
        )
        self._prefix = channel_prefix
        self._pubsub = PLAIN if cluster_node is None else SHARDED
        self.run_id = ""
        """The Redis process the publisher is connected to (its run_id): an epoch another process made
        cannot be vouched for (`streams`)."""
        self.on_moved: Callable[[], None] | None = None
        """Called when Redis says a topic is served elsewhere now (a MOVED answer, or a channel it
        unsubscribed): set by `RedisClusterBackend`."""
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._health_check_interval = health_check_interval
        self.max_message_size = max_message_size
        self.max_in_flight = max_in_flight
        self.presence_ttl = presence_ttl
        """Seconds a member of a topic's presence outlives its process's last heartbeat."""
        self._members: dict[tuple[str, str], str] = {}  # (topic, member id): info, joined here
        # A listener reads one message per reply; the publisher a batch of history, which
        # `read` bounds to max_message_size (and one message more).
        self._listener_reply_size = max_message_size + _HEADER_SIZE + _REPLY_SLACK
        self._publisher_reply_size = 2 * max_message_size + _REPLY_SLACK
        self._numbering = Numbering()
        self._gaps = GapTracker()
        self._wanted: set[str] = set()
        self._confirmed: dict[str, trio.Event] = {}
        self._listener: RespConnection | None = None
        self._listener_lock = trio.Lock()
        self._missed_logged = False  # on this listener connection
        self._pipeline: Pipeline | None = None  # publishing and history: None while Redis is lost
        self._publisher_down_because = "not connected yet"
        self._epoch_token = new_epoch()
        self._epochs_made = 0
        self._resend: list[tuple[bytes, OnReply | None]] = []  # publishes owed to the next connection
        self._script_hashes = {
            name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()
        }
        self._outage = 0  # publishes that reached only this process since Redis was lost
        self._refused = 0  # publishes Redis answered with an error, or too large to send
        self.undelivered = 0
        """Publishes from this process that may not have reached Redis (so the others)."""
        self.missed = 0
        """Publishes from other processes that this one's listener missed (gaps in numbering)."""
        self.rejected = 0
        """Messages from Redis that were skipped as malformed or oversized."""
        self.publishes = 0
        """Publishes handed to it."""
        self.outages = 0
        """Times one of its connections to Redis was lost."""
        self.reconnects = 0
        """Connections made again after one was lost."""
        self.outage_seconds = 0.0
        """Time its connections spent lost, each from its loss to its reconnection."""
        self.command_seconds = Histogram(SECONDS)
        """Round trips of the commands it waits for (history, positions, presence)."""

    def stats(self) -> Snapshot:
        """Its figures now, by metric name (see `trio_ws.stats()`)."""
        return {
            "trio_ws_redis_publishes_total": {(): self.publishes},
            "trio_ws_redis_undelivered_total": {(): self.undelivered},
            "trio_ws_redis_missed_total": {(): self.missed},
            "trio_ws_redis_rejected_total": {(): self.rejected},
            "trio_ws_redis_in_flight": {(): self.in_flight},
            "trio_ws_redis_reconnects_total": {(): self.reconnects},
            "trio_ws_redis_outages_total": {(): self.outages},
            "trio_ws_redis_outage_seconds_total": {(): self.outage_seconds},
            "trio_ws_redis_command_seconds": {(): self.command_seconds.read()},
        }

    # ---- connections -----------------------------------------------------------------

    async def _connect(self, max_reply_size: int, *, publisher: bool = False) -> RespConnection:
        """A connection that is logged in and on the right db, and reads replies of at most
        `max_reply_size` bytes; for the `publisher`, `run_id` is read from it too."""
        with trio.fail_after(self._timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            if self._ssl_context is not None:
                stream = trio.SSLStream(stream, self._ssl_context, server_hostname=self._host)
            connection = RespConnection(stream, max_reply_size)
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
                if publisher:
                    self.run_id = await self._run_id_of(connection)
            except BaseException:
                await connection.aclose()
                raise
        return connection

    async def _run_id_of(self, connection: RespConnection) -> str:
        """The run_id of the Redis process at the other end (changed by every restart)."""
        await connection.send("INFO", "server")
        try:
            reply = await connection.reply()
        except ConnectionError as exc:  # INFO forbidden (an ACL): restarts go unnoticed
            logger.warning("cannot read the run_id of Redis at %s (%s)", self.url, _why(exc))
            return "unknown"
        for line in reply.splitlines() if isinstance(reply, bytes) else ():
            if line.startswith(b"run_id:"):
                return line[7:].strip().decode("ascii", "replace")[:64]
        return "unknown"

    async def query(self, *args: bytes | str) -> Any:
        """One command on a connection of its own, closed after the answer: for what is
        asked now and then (a cluster's slot map), never on the data path. Raises
        ConnectionError (or trio.TooSlowError after `timeout`) if Redis cannot answer."""
        try:
            connection = await self._connect(self._publisher_reply_size)
        except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
            raise ConnectionError(f"cannot reach Redis at {self.url}: {_why(exc)}") from exc
        try:
            with trio.fail_after(self._timeout):
                await connection.send(*args)
                return await connection.reply()
        except _STREAM_ERRORS as exc:
            raise ConnectionError(f"no answer from Redis at {self.url}: {_why(exc)}") from exc
        finally:
            await connection.aclose()

    async def run(
        self, hub: Receiver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, then publish and listen for publishes from other processes until cancelled."""
        try:
            listener = await self._connect(self._listener_reply_size)
            publisher = await self._connect(self._publisher_reply_size, publisher=True)
        except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
            raise ConnectionError(f"cannot reach Redis at {self.url}: {_why(exc)}") from exc
        try:
            async with open_nursery_unwrapped() as nursery:
                await nursery.start(self._keep_publishing, publisher)
                nursery.start_soon(self._keep_presence_fresh)
                task_status.started()
                await self._keep_listening(listener, hub)
        finally:
            await self._drop_listener()

    async def _keep_listening(self, listener: RespConnection, hub: Receiver) -> None:
        backoff = Backoff(_FIRST_BACKOFF, self._max_backoff)
        while True:
            try:
                await self._listen(listener, hub)
            except ReplyTooLarge:
                self._reject("?", f"a message larger than max_message_size ({self.max_message_size})")
            except _STREAM_ERRORS as exc:
                logger.warning("lost the Redis connection at %s (%s); reconnecting", self.url, _why(exc))
            await self._drop_listener()
            listener = await self._reconnect(backoff, self._listener_reply_size)
            logger.info("reconnected to Redis at %s; resubscribing %d topics", self.url, len(self._wanted))

    async def _keep_publishing(
        self, publisher: RespConnection, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the publishing pipeline; when its connection fails, make another (with
        back-off, whether or not anyone publishes) and send it what was left unanswered."""
        backoff = Backoff(_FIRST_BACKOFF, self._max_backoff)
        while True:
            pipeline = Pipeline(
                publisher,
                timeout=self._timeout,
                health_check_interval=self._health_check_interval,
                max_in_flight=self.max_in_flight,
            )
            for text in SCRIPTS.values():  # before any EVALSHA: Redis may have restarted
                pipeline.send_nowait(("SCRIPT", "LOAD", text), self._published)
            resend, self._resend = self._resend, []
            for encoded, on_reply in resend:
                pipeline.send_encoded_nowait(encoded, on_reply)
            self._pipeline = pipeline
            if self._outage:
                logger.info(
                    "publishing to Redis at %s again; %d publishes reached only this process meanwhile",
                    self.url,
                    self._outage,
                )
                self._outage = 0
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED  # started once, when the first pipeline is
            try:
                await pipeline.run()
            except ReplyTooLarge as exc:
                self._publisher_down_because = _why(exc)
            except _STREAM_ERRORS as exc:
                self._publisher_down_because = _why(exc)
                logger.warning("lost the publishing connection to Redis at %s (%s)", self.url, _why(exc))
            finally:
                self._pipeline = None
                with trio.CancelScope(shield=True):
                    await publisher.aclose()
                self._owed(pipeline.unanswered())
            publisher = await self._reconnect(backoff, self._publisher_reply_size, publisher=True)

    async def _keep_presence_fresh(self) -> None:
        """Join again, every third of `presence_ttl`, each member this process holds: their
        entries stay while it lives (and come back if Redis lost them), and expire within
        the TTL once it is gone."""
        while True:
            await trio.sleep(self.presence_ttl / 3)
            pipeline = self._pipeline
            if pipeline is None:
                continue
            for (topic, member), info in list(self._members.items()):
                await pipeline.wait_for_room()
                if pipeline.closed:
                    break
                arguments = (*presence_keys(self._prefix, topic), member, info, self._presence_ttl_ms)
                pipeline.send_nowait(("EVALSHA", self._script_hashes["JOIN"], "2", *arguments), None)

    @property
    def members_here(self) -> frozenset[tuple[str, str]]:
        """The (topic, member id) pairs this backend joined and keeps fresh."""
        return frozenset(self._members)

    @property
    def _presence_ttl_ms(self) -> str:
        return str(max(1, round(self.presence_ttl * 1000)))

    async def join(self, topic: str, member: str, info: str) -> None:
        """Add `member` (with `info`, JSON) to `topic`'s presence, for every process; kept
        fresh by this process until `leave`. Never raises for a lost connection."""
        check_topic(topic)
        self._members[topic, member] = info
        try:
            await self._script(
                "JOIN", (*presence_keys(self._prefix, topic), member, info, self._presence_ttl_ms)
            )
        except ConnectionError as exc:  # the heartbeat adds it once Redis is back
            logger.warning("could not add a member to the presence of %r (%s)", topic, _why(exc))

    async def leave(self, topic: str, member: str) -> None:
        """Remove `member` from `topic`'s presence."""
        check_topic(topic)
        self._members.pop((topic, member), None)
        try:
            await self._script("LEAVE", (*presence_keys(self._prefix, topic), member))
        except ConnectionError as exc:  # it expires within presence_ttl
            logger.warning("could not remove a member from the presence of %r (%s)", topic, _why(exc))

    async def members(self, topic: str) -> dict[str, str]:
        """Every process's members of `topic`, to their info (JSON); raises ConnectionError
        if Redis cannot be asked."""
        check_topic(topic)
        reply = await self._script("MEMBERS", presence_keys(self._prefix, topic))
        try:
            return members_of(reply)
        except ValueError as exc:
            raise ConnectionError(str(exc)) from None

    def _owed(self, unanswered: list[tuple[bytes, OnReply | None]]) -> None:
        """Of the commands a lost connection left unanswered, publishes go again on the
        next connection (a receiver drops one Redis had taken); a waiting call is failed."""
        for encoded, on_reply in unanswered:
            if on_reply == self._published and encoded.startswith(self._pubsub.publish_prefix()):
                self._resend.append((encoded, on_reply))
            elif on_reply is not None and on_reply != self._published:
                on_reply(ConnectionError(f"lost the connection to Redis: {self._publisher_down_because}"))

    async def _reconnect(
        self, backoff: Backoff, max_reply_size: int, *, publisher: bool = False
    ) -> RespConnection:
        """Try again and again, with back-off, until a connection is made (a connection was
        lost: counted as an outage, that lasts until then)."""
        self.outages += 1
        lost_at = trio.current_time()
        while True:
            await trio.sleep(backoff.next_delay())
            try:
                connection = await self._connect(max_reply_size, publisher=publisher)
            except (*_STREAM_ERRORS, trio.TooSlowError):
                continue
            backoff.reset()
            self.reconnects += 1
            self.outage_seconds += trio.current_time() - lost_at
            return connection

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        for topic in self._wanted:  # to be confirmed again after reconnecting
            self._confirmed[topic] = trio.Event()
        if listener is not None:
            await listener.aclose()

    async def _listen(self, listener: RespConnection, hub: Receiver) -> None:
        """Deliver what the listener receives; a connection silent too long is dead."""
        async with self._listener_lock:
            self._listener = listener
            self._missed_logged = False
            if self._wanted:
                await listener.send(self._pubsub.subscribe, *(self._channel(topic) for topic in self._wanted))
        pinged = False
        while True:
            silence = self._health_check_interval if pinged else self._health_check_interval / 2
            with trio.move_on_at(listener.last_received_at + silence):
                await listener.receive()
                pinged = False
                while (reply := listener.buffered_reply()) is not NO_REPLY:  # all of them, at once
                    if isinstance(reply, Exception):
                        raise reply
                    self.handle_push(hub, reply)
                continue
            if pinged:
                raise ConnectionError(f"no answer to a PING within {self._health_check_interval / 2:g} s")
            async with self._listener_lock:
                await listener.send("PING")
            pinged = True

    def handle_push(self, hub: Receiver, reply: object) -> None:
        """One reply on the listener: a message, a subscription confirmed or ended, or a pong.

        Anything may arrive here (any client of the Redis can publish on our channels): what
        is not ours in form is counted in `rejected`, and nothing raises."""
        if not isinstance(reply, list) or len(reply) < 2 or not isinstance(reply[1], bytes):
            return  # not a push Redis sends in subscribed mode: nothing for us
        kind, topic = reply[0], self._pubsub.topic(self._prefix, reply[1])
        if kind == self._pubsub.message_kind and len(reply) == 3:
            self._received(hub, topic, reply[2])
        elif kind == self._pubsub.subscribed_kind:
            event = self._confirmed.get(topic)
            if event is not None:
                event.set()
        elif kind == self._pubsub.unsubscribed_kind and topic in self._wanted:
            self._moved()  # Redis ended it: in a cluster, the topic's slot moved

    def _moved(self) -> None:
        if self.on_moved is not None:
            self.on_moved()

    def _channel(self, topic: str) -> str:
        return self._pubsub.channel(self._prefix, topic)

    def _received(self, hub: Receiver, topic: str, payload: object) -> None:
        """Deliver a message another process published; anything malformed is skipped.

        Whatever arrives from Redis is untrusted: any client of that Redis can publish on
        our channels. A payload that is not ours in form is counted in `rejected`, logged
        and dropped; it never reaches the hub, and never ends the listener.
        """
        if isinstance(payload, bytes) and payload.startswith(HISTORY_MARK):
            self._received_with_position(hub, topic, payload)
            return
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

    def _received_with_position(self, hub: Receiver, topic: str, payload: bytes) -> None:
        """Deliver a publication `APPEND` made (from any process, this one included)."""
        if len(payload) > _HEADER_SIZE + 20 + self.max_message_size:
            self._reject(topic, f"a message larger than max_message_size ({self.max_message_size})")
            return
        try:
            publication = decode_publication(topic, payload)
        except MalformedPublication as exc:
            self._reject(topic, str(exc))
            return
        hub.deliver_locally(topic, publication.data, publication)

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
        check_topic(topic)
        self._wanted.add(topic)
        event = self._confirmed.setdefault(topic, trio.Event())
        async with self._listener_lock:
            if self._listener is None:
                logger.warning("Redis is unreachable: topic %r will be subscribed on reconnection", topic)
                return
            try:
                await self._listener.send(self._pubsub.subscribe, self._channel(topic))
            except _STREAM_ERRORS:
                return  # the listener task notices and reconnects
        with trio.move_on_after(self._timeout):
            await event.wait()

    async def unsubscribe(self, topic: str) -> None:
        """Unsubscribe in Redis (no local subscriber wants `topic` any more)."""
        check_topic(topic)
        self._wanted.discard(topic)
        self._confirmed.pop(topic, None)
        self._gaps.forget(topic)
        async with self._listener_lock:
            if self._listener is not None:
                with contextlib.suppress(*_STREAM_ERRORS):
                    await self._listener.send(self._pubsub.unsubscribe, self._channel(topic))

    async def publish(self, topic: str, message: Data) -> None:
        """Queue a PUBLISH on the pipelined connection; never raise for a lost connection.

        It returns without waiting for Redis's answer (many publishes are in flight at
        once), unless `max_in_flight` are: then it waits for room. A publish queued on a
        connection that fails before Redis answered is sent again on the next one under the
        same number, so that a receiver drops it if Redis had taken it. While Redis is
        unreachable, publishes are counted in `undelivered` and logged when the outage
        starts and ends; the connection comes back with back-off on its own, however often
        the application publishes. A publish cancelled while waiting for room is counted too.
        An invalid topic raises ValueError (`trio_ws.topics.check_topic`).
        """
        check_topic(topic)
        self.publishes += 1
        data = message.encode() if isinstance(message, str) else bytes(message)
        if len(data) > self.max_message_size:
            self._undelivered_now(ValueError(f"a message of {len(data)} bytes, over max_message_size"))
            return
        pipeline = await self._pipeline_with_room()
        if pipeline is None:
            return
        kind = b"t" if isinstance(message, str) else b"b"
        number = self._numbering.next_number(topic)
        self._numbering.consume(topic)
        payload = b"".join([self._numbering.origin, kind, number.to_bytes(_NUMBER_SIZE, "big"), data])
        pipeline.send_nowait((self._pubsub.publish, self._channel(topic), payload), self._published)

    async def flush(self) -> None:
        """Return once every publish queued so far has Redis's answer, or the connection
        failed (a closing hub calls this, bounded by its grace period)."""
        pipeline = self._pipeline
        if pipeline is not None:
            await pipeline.answered()
        else:
            await trio.lowlevel.checkpoint()

    @property
    def in_flight(self) -> int:
        """Commands sent to Redis (or owed to the next connection) and not answered yet."""
        pipeline = self._pipeline
        return len(self._resend) + (len(pipeline) if pipeline is not None else 0)

    async def _pipeline_with_room(self) -> Pipeline | None:
        """The publishing pipeline once it has room; None (counted) while Redis is unreachable."""
        pipeline = self._pipeline
        if pipeline is None:
            self._undelivered_now(ConnectionError(self._publisher_down_because))
            await trio.lowlevel.checkpoint()
            return None
        try:
            await pipeline.wait_for_room()
        except BaseException:  # cancelled while waiting: counted, never silent
            self.undelivered += 1
            raise
        if pipeline.closed:
            self._undelivered_now(ConnectionError(self._publisher_down_because))
            return None
        return pipeline

    def _published(self, reply: Any) -> None:
        """Redis answered a PUBLISH (or a PING): an error is counted, not raised."""
        if isinstance(reply, Exception):
            if _is_moved(reply):
                self._moved()
            self._undelivered_now(reply)

    async def append(self, topic: str, message: Data, size: int, ttl: float | None) -> Publication | None:
        """Give `message` the next position in `topic`'s history in Redis and publish it
        there (one script: atomic); None, counted in `undelivered`, if Redis did not
        confirm it. It reaches this process's subscribers too through Redis, in offset order.
        """
        check_topic(topic)
        self.publishes += 1
        kind, data = encode_publication(message)
        if len(data) > self.max_message_size:
            self._undelivered_now(ValueError(f"a message of {len(data)} bytes, over max_message_size"))
            return None
        meta, history = history_keys(self._prefix, topic)
        arguments = (
            meta,
            history,
            self._channel(topic),
            kind,
            data,
            str(size),
            _ttl_ms(ttl),
            self._fresh_epoch(),
            self.run_id,
            self._pubsub.publish,
        )
        try:
            reply = await self._script("APPEND", arguments)
        except (ConnectionError, trio.TooSlowError) as exc:
            self._undelivered_now(exc)
            return None
        except BaseException:
            self.undelivered += 1
            raise
        if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bytes)):
            reply = None
        try:
            position = StreamPosition(reply[1], reply[0].decode("ascii", "replace")) if reply else None
        except ValueError:
            position = None
        if position is None:
            self._undelivered_now(ConnectionError("an APPEND reply not in its form"))
            return None
        return Publication(topic, message if isinstance(message, str) else bytes(message), *_fields(position))

    async def position(
        self, topic: str, since: StreamPosition | None, ttl: float | None
    ) -> tuple[StreamPosition, bool]:
        """`topic`'s position now, and whether its history in Redis still has every
        publication after `since` (always False without `since`). Raises ConnectionError
        if Redis cannot be asked, or answers out of form."""
        check_topic(topic)
        meta, history = history_keys(self._prefix, topic)
        after = since.offset if since is not None else 0
        arguments = (meta, history, str(after), _ttl_ms(ttl), self._fresh_epoch(), self.run_id)
        try:
            current, kept = position_of(await self._script("POSITION", arguments))
        except MalformedPublication as exc:
            raise ConnectionError(str(exc)) from None
        if since is None or since.epoch != current.epoch or since.offset > current.offset:
            return current, False
        return current, kept

    async def read(
        self, topic: str, after: StreamPosition, max_count: int, max_bytes: int, ttl: float | None
    ) -> tuple[StreamPosition, list[Publication] | None]:
        """`topic`'s position now, and the publications after `after` in its history in
        Redis, oldest first (one script: both at once): at most `max_count`, and
        `max_bytes` of data (never more than `max_message_size`), but at least one; [] if
        `after` is the latest; None if the one after it is gone (or the epoch is another).
        Raises ConnectionError if Redis cannot be asked, or answers out of form (a batch
        that does not follow `after` is out of form)."""
        check_topic(topic)
        meta, history = history_keys(self._prefix, topic)
        count, size = max(1, min(max_count, 1024)), max(1, min(max_bytes, self.max_message_size))
        arguments = (
            meta,
            history,
            str(after.offset),
            str(count),
            str(size),
            _ttl_ms(ttl),
            self._fresh_epoch(),
            self.run_id,
        )
        try:
            current, kept, entries = read_reply(await self._script("READ", arguments))
            batch = decode_entries(topic, current.epoch, entries)
        except MalformedPublication as exc:
            raise ConnectionError(str(exc)) from None
        if current.epoch != after.epoch or not kept or after.offset > current.offset:
            return current, None
        if [publication.offset for publication in batch] != list(
            range(after.offset + 1, after.offset + 1 + len(batch))
        ):
            raise ConnectionError("a READ reply whose entries do not follow the position asked")
        if len(batch) > count or (not batch and after.offset < current.offset):
            raise ConnectionError("a READ reply with more entries than asked, or none when some are due")
        return current, batch

    async def _script(self, name: str, arguments: tuple[bytes | str, ...]) -> Any:
        """Run one of `streams`' scripts: two keys, then its arguments."""
        return await self._call("EVALSHA", self._script_hashes[name], "2", *arguments)

    async def _call(self, *args: bytes | str) -> Any:
        pipeline = self._pipeline
        if pipeline is None:
            raise ConnectionError(self._publisher_down_because)
        # No timeout of its own: the pipeline fails its connection, and so this call, when
        # an answer is `timeout` late.
        sent_at = trio.current_time()
        try:
            reply = await pipeline.call(*args)
        except ConnectionError as exc:
            if _is_moved(exc):
                self._moved()
            raise
        self.command_seconds.observe(trio.current_time() - sent_at)
        return reply

    def _fresh_epoch(self) -> str:
        """An epoch no topic has had: this backend's random token and a counter (made for
        each script call that may start a topic's stream, so it must be cheap)."""
        self._epochs_made += 1
        return f"{self._epoch_token}{self._epochs_made:x}"

    def _undelivered_now(self, exc: BaseException) -> None:
        """A publish that did not reach Redis, counted. A lost connection starts an outage,
        logged once and again when it ends (a new connection); anything else (an error
        reply such as MOVED as a slot moves, a message over the size) is no outage, and is
        logged the 1st, 2nd, 4th... time, so that a later outage is still logged."""
        self.undelivered += 1
        if isinstance(exc, ErrorReply) or not isinstance(exc, (ConnectionError, trio.TooSlowError)):
            self._refused += 1
            if self._refused & (self._refused - 1) == 0:
                logger.warning(
                    "a publish to Redis at %s was not delivered (%s; %d so far)",
                    self.url,
                    _why(exc),
                    self._refused,
                )
            return
        self._outage += 1
        if self._outage == 1:
            logger.warning(
                "could not publish to Redis at %s (%s): publishes reach only this process until it is back",
                self.url,
                _why(exc),
            )
