"""Properties of the HTTP/2 layer, for arbitrary input: the frame guard counts the same
however the bytes are cut, the header fields a client sends always make a `Request` or a
400, answers never carry what HTTP/2 forbids, and a model of streams, windows and closes
checked after every step."""

from __future__ import annotations

import logging

import h2.errors
import pytest
import trio
import trio.testing
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.handshake import RejectHandshake
from trio_ws.http2_connection import Http2Connection, Http2Stream
from trio_ws.http2_guard import FrameGuard, Http2Abuse
from trio_ws.http2_messages import request_from_fields, response_fields

from .strategies import examples

SMALL = trio_ws.Http2Limits(
    max_header_frames=3, max_header_list_size=4096, max_control_frames_per_window=6, rate_window=1.0
)


def outcome(guard: FrameGuard, chunks: list[bytes], times: list[float]) -> tuple[list[int], str | None]:
    """Feed `chunks`; the absolute offsets where GOAWAY frames end, and the limit passed."""
    ends, offset = [], 0
    try:
        for chunk, now in zip(chunks, times, strict=True):
            ends += [offset + end for end in guard.feed(chunk, now)]
            offset += len(chunk)
    except Http2Abuse as abuse:
        return ends, abuse.limit
    return ends, None


frames = st.one_of(
    st.builds(
        lambda n: PingFrame(0, opaque_data=n.to_bytes(8, "big")).serialize(), st.integers(0, 2**64 - 1)
    ),
    st.builds(
        lambda sid: RstStreamFrame(sid, error_code=8).serialize(), st.integers(1, 99).map(lambda i: 2 * i + 1)
    ),
    st.builds(lambda data: DataFrame(1, data).serialize(), st.binary(max_size=40)),
    st.builds(lambda data: HeadersFrame(1, data).serialize(), st.binary(max_size=200)),
    st.builds(lambda data: HeadersFrame(1, data, flags=["END_HEADERS"]).serialize(), st.binary(max_size=200)),
    st.builds(lambda data: ContinuationFrame(1, data).serialize(), st.binary(max_size=200)),
    st.builds(
        lambda data: ContinuationFrame(1, data, flags=["END_HEADERS"]).serialize(), st.binary(max_size=50)
    ),
    st.just(bytes.fromhex("000008070000000000000000000000000000")),  # GOAWAY, no error
    st.binary(min_size=1, max_size=30),  # and noise
)


@settings(max_examples=examples(300))
@given(st.lists(frames, max_size=30), st.data())
def test_the_frame_guard_counts_the_same_however_the_bytes_are_cut(
    parts: list[bytes], data: st.DataObject
) -> None:
    wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    whole = outcome(FrameGuard(SMALL, server=True), [wire], [0.0])
    cut = outcome(FrameGuard(SMALL, server=True), chunks, [0.0] * len(chunks))
    # Cut short or not, the same frames are counted: the same limit is passed, and every
    # GOAWAY found is found at the same place (a limit passed early in one feed stops it).
    assert cut[1] == whole[1]
    if whole[1] is None:
        assert cut[0] == whole[0]


@settings(max_examples=examples(200))
@given(st.integers(1, 20), st.floats(0, 0.99))
def test_control_frames_past_the_rate_are_refused_and_a_new_window_starts_afresh(
    count: int, at: float
) -> None:
    guard = FrameGuard(SMALL, server=True)
    guard.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0.0)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    passed = False
    for i in range(count):
        try:
            guard.feed(ping, at * SMALL.rate_window * i / count)  # all within one window
        except Http2Abuse as abuse:
            assert abuse.limit == "max_control_frames_per_window"
            passed = True
            assert i == SMALL.max_control_frames_per_window, "refused exactly past the limit"
            break
    assert passed == (count > SMALL.max_control_frames_per_window)
    if not passed:
        guard.feed(ping, SMALL.rate_window)  # a window later: counted afresh


field_names = st.one_of(
    st.sampled_from([b":method", b":path", b":scheme", b":authority", b":protocol", b"host", b"origin"]),
    st.binary(max_size=12),
)


@settings(max_examples=examples(300))
@given(st.lists(st.tuples(field_names, st.binary(max_size=40)), max_size=12), st.booleans())
def test_any_header_fields_make_a_request_or_a_400(fields: list[tuple[bytes, bytes]], secure: bool) -> None:
    try:
        request = request_from_fields(fields, ("127.0.0.1", 1), secure)
    except RejectHandshake as rejection:
        assert rejection.response.status == 400
        return
    assert request.path.startswith("/")
    assert request.http_version == "2"
    assert request.scheme == ("wss" if secure else "ws")
    assert not any(name.startswith(":") for name, _ in request.headers.raw_items())
    if any(name == b":authority" for name, _ in fields):
        assert "host" in {name.lower() for name in request.headers}


@settings(max_examples=examples(300))
@given(
    st.integers(100, 599),
    st.lists(
        st.tuples(
            st.sampled_from(
                ["Connection", "Upgrade", "Keep-Alive", "X-Ok", "Content-Type", "transfer-encoding"]
            ),
            st.text(alphabet="abc; =", max_size=10),
        ),
        max_size=8,
    ),
    st.binary(max_size=20),
)
def test_answers_never_carry_what_http2_forbids(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    fields = response_fields(trio_ws.Response(status, headers, body), server_header="x")
    assert fields[0] == (b":status", b"200" if status == 101 else str(status).encode())
    names = [name for name, _ in fields[1:]]
    assert all(name == name.lower() and not name.startswith(b":") for name in names)
    assert not {b"connection", b"upgrade", b"keep-alive", b"transfer-encoding"} & set(names)


# ---- the model ------------------------------------------------------------------------

MODEL_LIMITS = trio_ws.Http2Limits(stream_window=65535, output_buffer=65536, max_concurrent_streams=4)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 2)),
        st.tuples(st.just("send"), st.integers(0, 2), st.integers(1, 150_000)),
        st.tuples(st.just("read"), st.integers(0, 2), st.integers(1, 200_000)),
        st.tuples(st.just("end"), st.integers(0, 2)),
        st.tuples(st.just("reset"), st.integers(0, 2)),
    ),
    max_size=25,
)


@settings(max_examples=examples(100), deadline=None)
@given(operations)
def test_a_model_of_streams_windows_and_closes(steps: list[tuple[object, ...]]) -> None:
    """A client connection and a server connection over a memory stream; arbitrary opens,
    sends (which may wait for windows), reads, ends and resets. After every step, once every
    task is blocked: what the server's side of each stream has read is a prefix of what was
    sent, in order; no stream buffers more than its window; the output buffers stay within
    `output_buffer` plus a frame; no more streams are open than the limit allows."""
    trio.run(run_model, steps, clock=trio.testing.MockClock(autojump_threshold=1))


async def run_model(steps: list[tuple[object, ...]]) -> None:
    logger = logging.getLogger("trio_ws.test")
    client_end, server_end = trio.testing.memory_stream_pair()
    client = Http2Connection(client_end, client=True, limits=MODEL_LIMITS, logger=logger, close_timeout=1)
    server = Http2Connection(server_end, client=False, limits=MODEL_LIMITS, logger=logger, close_timeout=1)
    server_streams: dict[int, Http2Stream] = {}
    opened = trio.Event()

    async def on_stream(stream: Http2Stream) -> None:
        server_streams[stream.stream_id] = stream
        server.send_headers(stream, [(b":status", b"200")])
        opened.set()
        await trio.sleep_forever()  # held open; the model reads and closes it

    client_streams: dict[int, Http2Stream] = {}
    sent: dict[int, bytearray] = {}  # every payload a send started, in order
    read: dict[int, bytearray] = {}
    sending: set[int] = set()  # one send at a time per stream, as a WebSocket does
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, on_stream)
        nursery.start_soon(client.serve, None)
        await client.settings_received.wait()
        for step in steps:
            kind, index = step[0], step[1]
            assert isinstance(index, int)
            if kind == "open" and index not in client_streams and client.may_open_stream:
                stream = client.open_stream(
                    [
                        (b":method", b"CONNECT"),
                        (b":protocol", b"websocket"),
                        (b":scheme", b"http"),
                        (b":path", b"/"),
                        (b":authority", b"x"),
                    ]
                )
                client_streams[index], sent[stream.stream_id], read[stream.stream_id] = (
                    stream,
                    bytearray(),
                    bytearray(),
                )
            elif (
                kind == "send" and index in client_streams and client_streams[index].stream_id not in sending
            ):
                stream = client_streams[index]
                payload = bytes([len(sent[stream.stream_id]) % 251]) * int(step[2])  # type: ignore[call-overload]
                sent[stream.stream_id] += payload
                sending.add(stream.stream_id)

                async def send(stream: Http2Stream = stream, payload: bytes = payload) -> None:
                    try:
                        await stream.send_all(payload)
                    except trio.BrokenResourceError:
                        pass
                    finally:
                        sending.discard(stream.stream_id)

                nursery.start_soon(send)
            elif kind == "read" and index in client_streams:
                sid = client_streams[index].stream_id
                target = server_streams.get(sid)
                if target is not None and target._buffer:  # only what is there: reads never wait here
                    with trio.move_on_after(0.01):
                        data = await target.receive_some()
                        read[sid] += data
            elif kind == "end" and index in client_streams:
                client.end_stream(client_streams[index])
            elif kind == "reset" and index in client_streams:
                stream = client_streams.pop(index)
                client.reset(stream, h2.errors.ErrorCodes.CANCEL)
                client.release(stream)
            await trio.testing.wait_all_tasks_blocked()
            check(client, server, server_streams, sent, read)
        nursery.cancel_scope.cancel()


def check(
    client: Http2Connection,
    server: Http2Connection,
    server_streams: dict[int, Http2Stream],
    sent: dict[int, bytearray],
    read: dict[int, bytearray],
) -> None:
    frame = 16384 + 9
    assert len(client._out) <= MODEL_LIMITS.output_buffer + frame
    assert len(server._out) <= MODEL_LIMITS.output_buffer + frame
    assert len(server.streams) <= MODEL_LIMITS.max_concurrent_streams
    for sid, stream in server_streams.items():
        assert len(stream._buffer) <= MODEL_LIMITS.stream_window, "more than the window buffered"
        got = read[sid] + stream._buffer
        # What arrived is what was sent, in order, nothing lost in between nor added.
        assert len(got) <= len(sent[sid])
        assert bytes(got) == bytes(sent[sid][: len(got)])


async def test_a_send_waiting_for_a_window_ends_when_its_stream_is_reset_locally() -> None:
    """Nothing else happens on the connection: the reset alone (through the RST_STREAM it
    writes) must wake the waiting send."""
    logger = logging.getLogger("trio_ws.test")
    client_end, server_end = trio.testing.memory_stream_pair()
    client = Http2Connection(client_end, client=True, limits=MODEL_LIMITS, logger=logger, close_timeout=1)
    server = Http2Connection(server_end, client=False, limits=MODEL_LIMITS, logger=logger, close_timeout=1)

    async def never_read(stream: Http2Stream) -> None:
        server.send_headers(stream, [(b":status", b"200")])
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, never_read)
        nursery.start_soon(client.serve, None)
        await client.settings_received.wait()
        stream = client.open_stream(
            [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"), (b":path", b"/"),
             (b":authority", b"x")]
        )  # fmt: skip
        await stream.wait_for_headers()
        ended = trio.Event()

        async def send() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"x" * 200_000)  # past the 64 KiB window
            ended.set()

        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        assert not ended.is_set(), "the window is shut: the send waits"
        client.reset(stream, h2.errors.ErrorCodes.CANCEL)
        with trio.fail_after(1):
            await ended.wait()
        nursery.cancel_scope.cancel()


async def test_a_peer_that_never_reads_our_answers_stops_being_read_at_output_buffer() -> None:
    """PINGs (under the rate limit) from a peer that never reads: their answers pile up
    until `output_buffer`, and then the server stops reading the peer, so the peer's own
    sends block, rather than the answers growing without end."""
    limits = trio_ws.Http2Limits(output_buffer=4096, max_control_frames_per_window=10**6)
    client_end, server_end = trio.testing.lockstep_stream_pair()  # a write waits for its read
    server = Http2Connection(
        server_end, client=False, limits=limits, logger=logging.getLogger("trio_ws.test"), close_timeout=1
    )
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        await client_end.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        for _ in range(2000):
            await client_end.send_all(ping * 10)
            sent += 10

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, None)
        nursery.start_soon(flood)
        await trio.testing.wait_all_tasks_blocked()
        # Each read is at most one write of ours: 10 PINGs, 10 answers of 17 bytes.
        assert len(server._out) <= limits.output_buffer + 10 * 17 + 100
        assert sent < 20_000, "the server stopped reading: the flood is stuck"
        nursery.cancel_scope.cancel()
