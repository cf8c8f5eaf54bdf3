"""`RedisClusterBackend`: a hub's publishes, history and presence over a Redis Cluster.

Each topic lives in one slot (`sharding.key_slot` of its hash tag), so on one primary: its
channel (sharded pub/sub, Redis 7), its history stream and offset, and its presence. The
backend reads the slot map (CLUSTER SLOTS) and runs one `RedisBackend` per primary, each
subscribed to the topics of its slots. It reads the map again every `topology_interval`
seconds, and at once when a node answers MOVED or ends a subscription: then topics whose
slot has a new primary (a failover, a reshard) are subscribed there, their present members
join there, and a backend for a primary that is gone is stopped. While a slot has no
reachable primary, publishes to its topics are counted in `undelivered`, and history a new
primary serves starts a new epoch (it cannot vouch for what the old one had not replicated),
so a resume from before a failover reports `recovered=False` rather than a gap.
"""

from __future__ import annotations

import functools
import logging
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..counters import Snapshot, merge, without_gauges
from ..history import Publication, StreamPosition
from ..messages import Data
from ..tasks import open_nursery_unwrapped
from .redis import RedisBackend
from .sharding import SLOTS, key_slot, tagged

if TYPE_CHECKING:
    from ..hub_backend import Receiver

__all__ = ["RedisClusterBackend", "parse_slots"]

logger = logging.getLogger("trio_ws.redis")


@dataclass(slots=True)
class ClusterNode:
    """A primary, and the backend (with its tasks' cancel scope) that talks to it."""

    node_id: str
    address: tuple[str, int]
    backend: RedisBackend
    scope: trio.CancelScope


def parse_slots(reply: object) -> tuple[list[str | None], dict[str, tuple[str, int]]]:
    """The owner (primary id) of each slot, and each primary's address, from CLUSTER SLOTS.
    ValueError if the reply is not in its form."""
    if not isinstance(reply, list):
        raise ValueError("a CLUSTER SLOTS reply that is not a list")
    owners: list[str | None] = [None] * SLOTS
    primaries: dict[str, tuple[str, int]] = {}
    for entry in reply:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[2], list)):
            raise ValueError("a CLUSTER SLOTS range not in its form")
        start, end, primary = entry[0], entry[1], entry[2]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < SLOTS):
            raise ValueError("a CLUSTER SLOTS range outside the slots")
        if len(primary) < 3 or not (
            isinstance(primary[0], bytes) and isinstance(primary[1], int) and isinstance(primary[2], bytes)
        ):
            raise ValueError("a CLUSTER SLOTS node not in its form")
        node_id = primary[2].decode("ascii", "replace")
        primaries[node_id] = (primary[0].decode("ascii", "replace"), primary[1])
        owners[start : end + 1] = [node_id] * (end - start + 1)
    return owners, primaries


class RedisClusterBackend:
    """A Redis Cluster for `open_hub(backend=RedisClusterBackend("redis://127.0.0.1:7000"))`.

    `url` names any node (with the password, TLS and options every node shares); `options`
    are `RedisBackend`'s, used for the backend of each primary. See the module docstring.
    """

    def __init__(self, url: str, *, topology_interval: float = 1.0, **options: Any) -> None:
        if "cluster_node" in options:
            raise TypeError("cluster_node is set by RedisClusterBackend itself")
        self._seed = RedisBackend(url, **options)  # checks the URL and the options
        if not topology_interval > 0:
            raise ValueError(
                f"topology_interval must be a positive number of seconds, not {topology_interval!r}"
            )
        self.url = self._seed.url
        """The seed node's URL, with its password (if any) redacted."""
        self.topology_interval = topology_interval
        self.max_message_size = self._seed.max_message_size
        self._url = url
        self._options = options
        self._prefix: str = options.get("channel_prefix", "trio_ws:")
        self._owners: list[str | None] = [None] * SLOTS
        self._nodes: dict[str, ClusterNode] = {}
        self._wanted: set[str] = set()
        self._subscribed_on: dict[str, str] = {}  # topic: the node id its subscription is on
        self._members: dict[tuple[str, str], str] = {}  # (topic, member): info, joined here
        self._refresh_now = trio.Event()
        # The primary that said a slot moved (a MOVED answer, a subscription it ended): the
        # next read of the map asks it first (see `refresh_soon`).
        self._ask_first: str | None = None
        self._nursery: trio.Nursery | None = None
        self._hub: Receiver | None = None
        self._retired = {"undelivered": 0, "missed": 0, "rejected": 0}
        self._retired_stats: Snapshot = {}  # the counts of the nodes' backends that were stopped
        self._no_primary = 0  # publishes to a slot without a reachable primary

    # ---- counters, over every primary's backend --------------------------------------

    def _total(self, name: str) -> int:
        counts: list[int] = [getattr(node.backend, name) for node in self._nodes.values()]
        return self._retired[name] + sum(counts)

    def stats(self) -> Snapshot:
        """Its figures now, summed over every primary's backend, by metric name."""
        no_primary: Snapshot = {"trio_ws_redis_undelivered_total": {(): self._no_primary}}
        nodes = [node.backend.stats() for node in self._nodes.values()]
        return merge([self._retired_stats, no_primary, *nodes])

    @property
    def undelivered(self) -> int:
        """Publishes from this process that may not have reached the cluster."""
        return self._total("undelivered") + self._no_primary

    @property
    def missed(self) -> int:
        """Publishes from other processes that this one's listeners missed."""
        return self._total("missed")

    @property
    def rejected(self) -> int:
        """Messages from the cluster skipped as malformed or oversized."""
        return self._total("rejected")

    @property
    def primaries(self) -> dict[str, tuple[str, int]]:
        """The primaries this process talks to now: node id to address."""
        return {node_id: node.address for node_id, node in self._nodes.items()}

    # ---- the slot map ----------------------------------------------------------------

    async def run(
        self, hub: Receiver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read the slot map, start a backend per primary, then follow the map until cancelled."""
        self._hub = hub
        async with open_nursery_unwrapped() as nursery:
            self._nursery = nursery
            await self._follow(await self._read_slots())
            task_status.started()
            while True:
                with trio.move_on_after(self.topology_interval):
                    await self._refresh_now.wait()
                self._refresh_now = trio.Event()
                first, self._ask_first = self._ask_first, None
                try:
                    await self._follow(await self._read_slots(first))
                except ConnectionError as exc:
                    logger.warning("cannot read the slot map of the cluster at %s (%s)", self.url, exc)

    def refresh_soon(self, reported_by: str | None = None) -> None:
        """Read the slot map again now: a node answered MOVED, or ended a subscription. The
        primary `reported_by` (the node id of the one that did) is asked first: a slot
        moved by a reshard is known to the two primaries that moved it before the rest of
        the cluster hears of it, and a map read from the seed meanwhile would still show
        the old owner (the topic's subscription, ended there, would then wait for the next
        `topology_interval`)."""
        if reported_by is not None:
            self._ask_first = reported_by
        self._refresh_now.set()

    async def _read_slots(
        self, first: str | None = None
    ) -> tuple[list[str | None], dict[str, tuple[str, int]]]:
        """The slot map, asked of the primary `first` (if it is known), then of the seed,
        then of each other primary known, until one answers."""
        askers = [self._seed] + [
            self._backend_for_address(node.address)
            for node_id, node in self._nodes.items()
            if node_id != first
        ]
        if first in self._nodes:
            askers.insert(0, self._backend_for_address(self._nodes[first].address))
        errors = []
        for asker in askers:
            try:
                return parse_slots(await asker.query("CLUSTER", "SLOTS"))
            except (ConnectionError, trio.TooSlowError, ValueError) as exc:
                errors.append(str(exc) or type(exc).__name__)
        raise ConnectionError(f"no node of the cluster at {self.url} answered CLUSTER SLOTS: {errors}")

    def _backend_for_address(self, address: tuple[str, int], node_id: str | None = None) -> RedisBackend:
        """A backend for the node at `address`, with the seed URL's credentials and options."""
        parsed = urllib.parse.urlsplit(self._url)
        userinfo = parsed.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{address[0]}:{address[1]}" if userinfo else f"{address[0]}:{address[1]}"
        url = urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
        return RedisBackend(url, cluster_node=node_id, **self._options)

    async def _follow(self, slot_map: tuple[list[str | None], dict[str, tuple[str, int]]]) -> None:
        """Make this process match the slot map: a backend per primary, each topic (and its
        present members) on its slot's primary."""
        owners, primaries = slot_map
        for node_id, node in list(self._nodes.items()):
            if primaries.get(node_id) != node.address:
                self._retire(node_id)
        for node_id, address in primaries.items():
            if node_id not in self._nodes:
                await self._start(node_id, address)
        self._owners = owners
        for topic in list(self._wanted):
            await self._subscribe_where_it_lives(topic)
        for (topic, member), info in list(self._members.items()):
            owner = self._node_of(topic)
            if owner is not None and (topic, member) not in owner.backend.members_here:
                await owner.backend.join(topic, member, info)

    async def _start(self, node_id: str, address: tuple[str, int]) -> None:
        assert self._nursery is not None
        backend = self._backend_for_address(address, node_id)
        backend.on_moved = functools.partial(self.refresh_soon, node_id)
        node = ClusterNode(node_id, address, backend, trio.CancelScope())
        try:
            await self._nursery.start(self._run_node, node)
        except ConnectionError as exc:
            logger.warning("cannot reach the cluster primary %s at %s:%d (%s)", node_id[:8], *address, exc)
            return
        self._nodes[node_id] = node
        logger.info("following the cluster primary %s at %s:%d", node_id[:8], *address)

    async def _run_node(self, node: ClusterNode, *, task_status: trio.TaskStatus[None]) -> None:
        assert self._hub is not None
        with node.scope:
            await node.backend.run(self._hub, task_status=task_status)

    def _retire(self, node_id: str) -> None:
        """Stop the backend of a node that is no longer a primary (or moved)."""
        node = self._nodes.pop(node_id)
        node.scope.cancel()
        for name in self._retired:
            self._retired[name] += getattr(node.backend, name)
        self._retired_stats = merge([self._retired_stats, without_gauges(node.backend.stats())])
        for topic, on in list(self._subscribed_on.items()):
            if on == node_id:
                del self._subscribed_on[topic]
        logger.info("the cluster node %s at %s:%d no longer serves slots here", node_id[:8], *node.address)

    def _node_of(self, topic: str) -> ClusterNode | None:
        owner = self._owners[key_slot(tagged(self._prefix, topic))]
        return None if owner is None else self._nodes.get(owner)

    async def _subscribe_where_it_lives(self, topic: str) -> None:
        node = self._node_of(topic)
        if node is None or self._subscribed_on.get(topic) == node.node_id:
            return
        former = self._nodes.get(self._subscribed_on.get(topic, ""))
        self._subscribed_on[topic] = node.node_id
        await node.backend.subscribe(topic)
        if former is not None:
            await former.backend.unsubscribe(topic)

    # ---- what the hub calls ----------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        """Subscribe on the topic's primary (once it is reachable)."""
        self._wanted.add(topic)
        await self._subscribe_where_it_lives(topic)
        await trio.lowlevel.checkpoint()

    async def unsubscribe(self, topic: str) -> None:
        """Unsubscribe on the primary the topic's subscription is on."""
        self._wanted.discard(topic)
        node = self._nodes.get(self._subscribed_on.pop(topic, ""))
        if node is not None:
            await node.backend.unsubscribe(topic)
        await trio.lowlevel.checkpoint()

    def _without_primary(self, topic: str) -> None:
        self._no_primary += 1
        if self._no_primary & (self._no_primary - 1) == 0:  # the 1st, 2nd, 4th... time
            logger.warning(
                "no reachable primary serves topic %r (%d publishes so far)", topic, self._no_primary
            )
        self.refresh_soon()

    async def publish(self, topic: str, message: Data) -> None:
        """Publish on the topic's primary; counted in `undelivered` while it has none."""
        node = self._node_of(topic)
        if node is None:
            self._without_primary(topic)
            await trio.lowlevel.checkpoint()
            return
        await node.backend.publish(topic, message)

    async def flush(self) -> None:
        """`RedisBackend.flush` on every primary."""
        for node in list(self._nodes.values()):
            await node.backend.flush()
        await trio.lowlevel.checkpoint()

    async def append(self, topic: str, message: Data, size: int, ttl: float | None) -> Publication | None:
        """Append to the topic's history on its primary (`RedisBackend.append`)."""
        node = self._node_of(topic)
        if node is None:
            self._without_primary(topic)
            await trio.lowlevel.checkpoint()
            return None
        return await node.backend.append(topic, message, size, ttl)

    async def position(
        self, topic: str, since: StreamPosition | None, ttl: float | None
    ) -> tuple[StreamPosition, bool]:
        """The topic's position, and whether what follows `since` is kept, from its primary."""
        return await self._primary_of(topic).position(topic, since, ttl)

    async def read(
        self, topic: str, after: StreamPosition, max_count: int, max_bytes: int, ttl: float | None
    ) -> tuple[StreamPosition, list[Publication] | None]:
        """The position, and the publications after `after`, from the topic's primary
        (`RedisBackend.read`)."""
        return await self._primary_of(topic).read(topic, after, max_count, max_bytes, ttl)

    def _primary_of(self, topic: str) -> RedisBackend:
        node = self._node_of(topic)
        if node is None:
            self.refresh_soon()
            raise ConnectionError(f"no reachable primary serves topic {topic!r}")
        return node.backend

    async def join(self, topic: str, member: str, info: str) -> None:
        """Add `member` to the topic's presence (again on a new primary, if its slot moves)."""
        self._members[topic, member] = info
        node = self._node_of(topic)
        if node is not None:
            await node.backend.join(topic, member, info)
        await trio.lowlevel.checkpoint()

    async def leave(self, topic: str, member: str) -> None:
        """Remove `member` from the topic's presence."""
        self._members.pop((topic, member), None)
        node = self._node_of(topic)
        if node is not None:
            await node.backend.leave(topic, member)
        await trio.lowlevel.checkpoint()

    async def members(self, topic: str) -> dict[str, str]:
        """The topic's members, from its primary (ConnectionError while it has none)."""
        return await self._primary_of(topic).members(topic)
