"""A TCP relay for tests: forwards 127.0.0.1:`port` to a target port, and can turn every
connection it holds into a black hole (nothing forwarded either way, no FIN, no RST), as
when a NAT entry or a load balancer's flow expires. Connections made later are forwarded."""

from __future__ import annotations

import trio


class BlackHoleRelay:
    """`async with trio.open_nursery() as n: await n.start(relay.run)`, then connect to
    `relay.port`; `relay.black_hole()` silences every connection open at that moment."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.generation = 0  # connections of an older generation are black holes
        self.connections = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    def black_hole(self) -> None:
        self.generation += 1

    async def _relay(self, client: trio.SocketStream) -> None:
        generation = self.generation
        self.connections += 1
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, generation, nursery.cancel_scope)
            nursery.start_soon(self._pump, upstream, client, generation, nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, generation: int, done: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                if self.generation == generation:
                    await sink.send_all(data)
                # else: swallowed; the sender sees its data taken and never answered
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if self.generation == generation:  # a black hole never passes a close on
            done.cancel()
        else:
            await trio.sleep_forever()
