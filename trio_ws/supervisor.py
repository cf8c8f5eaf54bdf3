"""`Supervisor`: N worker processes on listening sockets this process opens and keeps, in
the manner of gunicorn's arbiter.

- The sockets belong to the supervisor: one listening socket per worker *slot*, all in one
  `SO_REUSEPORT` group, so the kernel spreads new connections evenly over the slots (one
  socket shared by every worker would send nearly all of them to whichever worker the
  kernel wakes first). The worker of a slot inherits its socket; a replacement, or the new
  generation of a rolling restart, inherits the same one. Since the supervisor keeps it
  open, a connection waiting in a slot's queue while its worker drains or dies is accepted
  by the next worker of that slot: the port never refuses one.
- A worker says it is ready by writing one byte to a pipe once it accepts.
- A worker that exits unasked is logged (pid, exit code or signal) and replaced; the first
  death at once, repeated ones with a back-off. K deaths within T seconds (a crash loop), or
  a first-generation worker that dies before it is ready (an import error, a bad config),
  stop the service with a non-zero exit code.
- SIGTERM or SIGINT: the sockets close here, every worker drains; a second signal is passed
  on, and workers then stop at once. SIGHUP: a new generation starts, with the code as it
  is now on disk; once it is ready, the old one drains.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import trio

__all__ = ["Supervisor", "WORKER_VARIABLE", "EXIT_WORKER_DIED", "EXIT_CANNOT_RUN", "describe_exit"]

WORKER_VARIABLE = "TRIO_WS_WORKER"
"""The environment variable that makes `python -m trio_ws serve` a worker: JSON with the inherited socket
fds, the ready pipe and the supervisor's pid."""
EXIT_WORKER_DIED = 1  # the service ran, but a worker died unasked on the way
EXIT_CANNOT_RUN = 3  # a worker could not start, or crashed in a loop: the service stopped

logger = logging.getLogger("trio_ws.supervisor")


def describe_exit(code: int) -> str:
    """ "exited with code 1" or "was killed by SIGKILL", from a returncode."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclasses.dataclass(eq=False)
class Worker:
    """One worker process and what the supervisor knows of it."""

    process: trio.Process
    slot: int
    first_generation: bool
    restart: bool = False  # started by a SIGHUP: failing to start fails the restart, not the service
    ready: trio.Event = dataclasses.field(default_factory=trio.Event)
    exited: trio.Event = dataclasses.field(default_factory=trio.Event)
    retiring: bool = False  # asked to stop: its exit is expected

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Keeps one worker per slot running `command`; `slots[i]` are the listening sockets of
    slot i (one per address family)."""

    def __init__(
        self,
        command: Sequence[str],
        environment: dict[str, str],
        slots: Sequence[Sequence[trio.socket.SocketType]],
        *,
        url: str,
        max_deaths: int = 5,
        death_window: float = 30.0,
        start_timeout: float = 60.0,
    ) -> None:
        self.command = list(command)
        self.environment = environment
        self.slots = [list(sockets) for sockets in slots]
        self.count = len(self.slots)
        self.url = url
        self.max_deaths = max_deaths
        self.death_window = death_window
        self.start_timeout = start_timeout
        self.workers: list[Worker] = []
        self._deaths: collections.deque[float] = collections.deque()
        self._stopping = False
        self._rolling = False
        self._exit_code = 0
        self._nursery: trio.Nursery | None = None

    # ---- running ------------------------------------------------------------------------

    async def run(self) -> int:
        """Start the workers, follow them and the signals; the exit code once all stopped."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._follow_signals, signals)
                first = []
                for slot in range(self.count):
                    if self._stopping:  # a signal came during start-up: start no more
                        break
                    first.append(await self._spawn(slot, first_generation=True))
                nursery.start_soon(self._announce, first)
                await self._all_exited()
                nursery.cancel_scope.cancel()
        return self._exit_code

    async def _all_exited(self) -> None:
        while not (self._stopping and not self.workers):
            if self.workers:
                await self.workers[0].exited.wait()
            else:
                await trio.sleep(0.01)  # between a death and its replacement

    async def _follow_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                if self._stopping or self._rolling:
                    logger.warning(
                        "SIGHUP ignored: %s", "stopping" if self._stopping else "already restarting"
                    )
                else:
                    assert self._nursery is not None
                    self._nursery.start_soon(self._roll)
            elif not self._stopping:
                self._stop(
                    f"{signal.Signals(signum).name}: draining the workers (a second signal stops them now)"
                )
            else:  # a second signal: the workers stop at once
                logger.warning("%s again: stopping the workers now", signal.Signals(signum).name)
                for worker in self.workers:
                    worker.process.send_signal(signal.SIGTERM)

    def _stop(self, why: str, exit_code: int | None = None) -> None:
        """Drain every worker, and close the sockets here, so the port refuses once they did."""
        if exit_code is not None:
            self._exit_code = max(self._exit_code, exit_code)
        logger.warning("%s", why)
        self._stopping = True
        for sockets in self.slots:
            for sock in sockets:
                sock.close()
        for worker in self.workers:
            self._retire(worker)

    def _retire(self, worker: Worker) -> None:
        if not worker.retiring and worker.process.returncode is None:
            worker.retiring = True
            worker.process.send_signal(signal.SIGTERM)

    # ---- workers -----------------------------------------------------------------------

    async def _spawn(self, slot: int, *, first_generation: bool = False, restart: bool = False) -> Worker:
        """Start the worker of `slot` on its sockets, with a pipe to say it is ready."""
        ready_read, ready_write = os.pipe()
        fds = [sock.fileno() for sock in self.slots[slot]]
        environment = dict(self.environment)
        environment[WORKER_VARIABLE] = json.dumps(
            {"fds": fds, "ready_fd": ready_write, "supervisor": os.getpid(), "slot": slot}
        )
        try:
            # Its own process group: Ctrl-C in a terminal reaches the supervisor alone, which
            # then asks each worker to drain (a worker that got SIGINT too would stop at once).
            process = await trio.lowlevel.open_process(
                self.command, env=environment, pass_fds=(*fds, ready_write), process_group=0
            )
        finally:
            os.close(ready_write)
        worker = Worker(process, slot, first_generation, restart)
        self.workers.append(worker)
        assert self._nursery is not None
        self._nursery.start_soon(self._follow, worker, ready_read)
        if self._stopping:
            # The signal came while this one was starting: `_stop` did not see it, and it
            # would keep the supervisor (and the port) alive for good.
            self._retire(worker)
        return worker

    async def _follow(self, worker: Worker, ready_read: int) -> None:
        """Wait for the worker to say it is ready, then for its end; replace it if need be."""
        process = worker.process
        async with trio.lowlevel.FdStream(ready_read) as pipe:
            with trio.move_on_after(self.start_timeout) as waiting:
                if await pipe.receive_some(1):  # b"": it exited before it was ready
                    worker.ready.set()
        if waiting.cancelled_caught:
            logger.error("worker %d was not ready after %.0f s; killing it", worker.pid, self.start_timeout)
            process.kill()
        code = await process.wait()
        self.workers.remove(worker)
        worker.exited.set()
        self._exited(worker, code)

    def _exited(self, worker: Worker, code: int) -> None:
        how = describe_exit(code)
        if worker.retiring:
            # A worker told to stop before it set up its signal handling dies of the SIGTERM.
            if code not in (0, -signal.SIGTERM):
                logger.warning("worker %d %s while stopping", worker.pid, how)
                self._exit_code = max(self._exit_code, EXIT_WORKER_DIED)
            else:
                logger.info("worker %d stopped", worker.pid)
            return
        if self._stopping:
            self._exit_code = max(self._exit_code, EXIT_WORKER_DIED)
            logger.error("worker %d %s", worker.pid, how)
            return
        if not worker.ready.is_set() and worker.first_generation:
            self._stop(f"worker {worker.pid} {how} before it was ready; stopping", EXIT_CANNOT_RUN)
            return
        if not worker.ready.is_set() and worker.restart:
            # New code that cannot start: the restart fails, the old generation serves on.
            logger.error("worker %d of the new generation %s before it was ready", worker.pid, how)
            return
        self._exit_code = max(self._exit_code, EXIT_WORKER_DIED)
        now = trio.current_time()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.death_window:
            self._deaths.popleft()
        if len(self._deaths) >= self.max_deaths:
            self._stop(
                f"worker {worker.pid} {how}: {len(self._deaths)} deaths in {self.death_window:.0f} s, "
                "a crash loop; stopping",
                EXIT_CANNOT_RUN,
            )
            return
        logger.error("worker %d %s; starting another", worker.pid, how)
        assert self._nursery is not None
        self._nursery.start_soon(
            self._top_up, 0.0 if len(self._deaths) == 1 else min(0.1 * 2 ** len(self._deaths), 5.0)
        )

    async def _top_up(self, delay: float = 0.0) -> None:
        """Start workers until `count` are running (not counting those retiring)."""
        await trio.sleep(delay)
        if self._stopping or self._rolling:
            return  # a restart in progress tops up once it is done
        served = {worker.slot for worker in self.workers if not worker.retiring}
        for slot in sorted(set(range(self.count)) - served):
            if self._stopping:  # a signal came while the one before started
                return
            worker = await self._spawn(slot)
            with trio.move_on_after(self.start_timeout):
                await _ready_or_exited(worker)
            if worker.ready.is_set():
                logger.warning("worker %d started in place of the one that died", worker.pid)

    async def _announce(self, workers: list[Worker]) -> None:
        """One line once every worker of the first generation accepts."""
        for worker in workers:
            await _ready_or_exited(worker)
        if all(worker.ready.is_set() for worker in workers) and not self._stopping:
            pids = ", ".join(str(worker.pid) for worker in workers)
            _say(f"{len(workers)} workers ready on {self.url} (pids {pids}; supervisor {os.getpid()})")

    async def _roll(self) -> None:
        """SIGHUP: a new generation; once all of it accepts, the old one drains. If any new
        worker fails to start, the new generation goes and the old one stays."""
        self._rolling = True
        try:
            old = [worker for worker in self.workers if not worker.retiring]
            logger.warning("SIGHUP: starting %d new workers", self.count)
            new = [await self._spawn(slot, restart=True) for slot in range(self.count)]
            with trio.move_on_after(self.start_timeout):
                for worker in new:
                    await _ready_or_exited(worker)
            if all(worker.ready.is_set() and not worker.exited.is_set() for worker in new):
                for worker in old:
                    self._retire(worker)
                pids = ", ".join(str(worker.pid) for worker in new)
                _say(f"restarted: {len(new)} workers ready on {self.url} (pids {pids}); the old ones drain")
            else:
                if not self._stopping:
                    logger.error("SIGHUP: the new workers did not all start; the old ones keep serving")
                for worker in new:
                    self._retire(worker)
        finally:
            self._rolling = False
        await self._top_up()


async def _ready_or_exited(worker: Worker) -> None:
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, worker.ready)
        nursery.start_soon(wait, worker.exited)


def _say(line: str) -> None:
    # One write, newline included: workers share this stdout.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
