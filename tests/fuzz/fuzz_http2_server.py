"""Fuzz the server's HTTP/2 path: whatever a cleartext client sends after the preface, a
server with `http2=True, http2_cleartext=True` (small limits, so that they are reached) reads
it through the frame guard, h2, its streams and WebSocket handlers.

Invariants: serving the connection ends (virtual time: every timeout passes at once), and
nothing is logged at ERROR (an exception that escaped a stream, the connection, or the
server's connection task); what the server writes back parses as HTTP/2 frames.
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports(include=["trio_ws"]):
    import trio
    import trio.testing
    from hyperframe.frame import Frame

    import trio_ws
    import trio_ws.http2_connection  # imported lazily by the server: instrumented here
    from trio_ws.http2_messages import PREFACE
    from trio_ws.server import build_server

LIMITS = trio_ws.Http2Limits(
    max_concurrent_streams=4,
    max_header_frames=4,
    max_header_list_size=2048,
    max_resets_per_window=8,
    max_control_frames_per_window=32,
    stream_window=65535,
    output_buffer=65536,
)


class Errors(logging.Handler):
    """Keeps every record at ERROR or above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = Errors()
logging.getLogger("trio_ws").addHandler(ERRORS)
logging.getLogger("trio_ws").propagate = False


async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path == "/page":
        return trio_ws.Response(200, body="page")
    return None


CONFIG = trio_ws.ServerConfig(
    handler=echo,
    http2=True,
    http2_cleartext=True,
    http2_limits=LIMITS,
    process_request=process_request,
    max_size=4096,
    ping_interval=None,
)


async def serve_one(chunks: list[bytes]) -> bytes:
    server = build_server(CONFIG, [])
    client, server_side = trio.testing.memory_stream_pair()
    received = bytearray()
    finished = False

    async def serve() -> None:
        nonlocal finished
        await server.serve_stream(server_side)
        finished = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:  # the server may close on us mid-way: what it sent so far is checked all the same
            for chunk in chunks:
                await client.send_all(chunk)
                await trio.sleep(0.001)  # let the server act between chunks
            await client.send_eof()
        except trio.BrokenResourceError:
            pass
        with trio.move_on_after(120):
            try:
                while data := await client.receive_some():
                    received += data
            except trio.BrokenResourceError:
                pass
        # Every timeout of the connection (open, idle, close, linger) is shorter than this.
        nursery.cancel_scope.deadline = trio.current_time() + 300
    assert finished, "the connection was still served 300 s (of virtual time) after its client left"
    return bytes(received)


def frames_of(wire: bytes) -> None:
    """Everything the server wrote must be whole HTTP/2 frames (the last may be cut)."""
    view = memoryview(wire)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            return
        frame.parse_body(view[9 : 9 + length])
        view = view[9 + length :]


def one_input(data: bytes) -> None:
    """data[0] picks the chunk size; the rest follows the preface."""
    if not data:
        return
    step = (1, 9, 64, 1 << 30)[data[0] & 3]
    wire = PREFACE + data[1:]
    chunks = [wire[i : i + step] for i in range(0, len(wire), step)]
    ERRORS.records.clear()
    out = trio.run(serve_one, chunks, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not ERRORS.records, [r.getMessage() for r in ERRORS.records]
    frames_of(out)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
