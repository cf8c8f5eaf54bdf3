"""HTTP/2's own attacks, each against a live server in its own process, while a healthy
HTTP/1.1 client and a healthy HTTP/2 client keep echoing: each attack meets its named limit,
the attacker's connection ends, nobody else pauses, memory stays bounded and no descriptor
is left behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import hpack
import pytest
import trio
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .conftest import healthy_canary, hostile_server
from .h2_peer import RawH2

ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
LIMITS = {
    "max_concurrent_streams": 32,
    "max_resets_per_window": 100,
    "max_control_frames_per_window": 500,
    "max_header_frames": 16,
    "max_header_list_size": 16384,
}
SERVER = {
    "http2": True,
    "http2_cleartext": True,
    "http2_limits": LIMITS,
    "compression": None,
}

Attack = Callable[[int], Awaitable[int | None]]  # port -> the GOAWAY error code it got


def request_block(
    encoder: hpack.Encoder, path: str = "/echo", extra: list[tuple[str, str]] | None = None
) -> bytes:
    return encoder.encode(
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "127.0.0.1"),
            ("sec-websocket-version", "13"),
            *(extra or []),
        ]
    )


async def until_goaway(peer: RawH2) -> int | None:
    """Read until the server closes the connection; the error code of its GOAWAY."""
    with trio.fail_after(10):
        while not peer.closed:
            await peer.read_once()
    await peer.aclose()
    return peer.goaway_codes[-1] if peer.goaway_codes else None


async def flood(port: int, frames: Callable[[int], bytes], count: int) -> int | None:
    peer = await RawH2.connect(port)
    try:
        for i in range(0, count, 100):
            await peer.send_raw(b"".join(frames(i + k) for k in range(100)))
    except trio.BrokenResourceError:
        pass  # closed on us mid-flood: what we want
    return await until_goaway(peer)


async def rapid_reset(port: int) -> int | None:
    peer = await RawH2.connect(port)
    encoder = hpack.Encoder()
    with contextlib.suppress(trio.BrokenResourceError):
        for sid in range(1, 2 * 5000, 2):
            block = request_block(encoder)
            frame = HeadersFrame(sid, block, flags=["END_HEADERS"])
            await peer.send_raw(frame.serialize() + RstStreamFrame(sid, error_code=8).serialize())
    code = await until_goaway(peer)
    # The server stopped right past the limit (within the read that went past it), not
    # after the whole flood: every stream it saw was reset mid-exchange, or refused.
    assert peer.goaway_last_ids[-1] < 2 * 4 * LIMITS["max_resets_per_window"]
    return code


async def continuation_flood(port: int) -> int | None:
    peer = await RawH2.connect(port)
    block = request_block(hpack.Encoder())
    try:
        await peer.send_raw(HeadersFrame(1, block[:5]).serialize())  # no END_HEADERS
        for _ in range(10_000):
            await peer.send_raw(ContinuationFrame(1, b"\x00").serialize())
    except trio.BrokenResourceError:
        pass
    return await until_goaway(peer)


async def huge_header_list(port: int) -> int | None:
    peer = await RawH2.connect(port)
    block = request_block(hpack.Encoder(), extra=[("x-big", "a" * 40_000)])
    try:
        pieces = [block[i : i + 8000] for i in range(0, len(block), 8000)]
        await peer.send_raw(HeadersFrame(1, pieces[0]).serialize())
        for k, piece in enumerate(pieces[1:], 1):
            flags = ["END_HEADERS"] if k == len(pieces) - 1 else []
            await peer.send_raw(ContinuationFrame(1, piece, flags=flags).serialize())
    except trio.BrokenResourceError:
        pass
    return await until_goaway(peer)


async def hpack_bomb(port: int) -> int | None:
    """A small block that decodes to a huge header list: a 4 kB field put in the dynamic
    table, then named by its index (one byte) many times."""
    peer = await RawH2.connect(port)
    encoder = hpack.Encoder()
    first = request_block(encoder, extra=[("x-bomb", "b" * 4000)])
    await peer.send_raw(HeadersFrame(1, first, flags=["END_HEADERS"]).serialize())
    # Index 62 is the newest dynamic entry: the x-bomb field, 4 kB a byte.
    bomb = request_block(encoder) + b"\xbe" * 1000
    with contextlib.suppress(trio.BrokenResourceError):
        await peer.send_raw(HeadersFrame(3, bomb, flags=["END_HEADERS"]).serialize())
    return await until_goaway(peer)


async def table_size_past_settings(port: int) -> int | None:
    """A dynamic table size update larger than our SETTINGS_HEADER_TABLE_SIZE."""
    peer = await RawH2.connect(port)
    update = bytes([0x3F, 0xE1, 0xFF, 0x03])  # size update to 65536 (5-bit prefix integer)
    with contextlib.suppress(trio.BrokenResourceError):
        block = update + request_block(hpack.Encoder())
        await peer.send_raw(HeadersFrame(1, block, flags=["END_HEADERS"]).serialize())
    return await until_goaway(peer)


async def too_many_streams(port: int) -> int | None:
    peer = await RawH2.connect(port)
    encoder = hpack.Encoder()
    try:
        for sid in range(1, 2 * 200, 2):
            await peer.send_raw(HeadersFrame(sid, request_block(encoder), flags=["END_HEADERS"]).serialize())
    except trio.BrokenResourceError:
        pass
    return await until_goaway(peer)


async def empty_data_flood(port: int) -> int | None:
    peer = await RawH2.connect(port)
    sid = await peer.open_websocket("/echo")
    try:
        for _ in range(20):
            await peer.send_raw(DataFrame(sid, b"").serialize() * 100)
    except trio.BrokenResourceError:
        pass
    return await until_goaway(peer)


ATTACKS: dict[str, tuple[Attack, int]] = {
    "rapid reset (CVE-2023-44487)": (rapid_reset, ENHANCE_YOUR_CALM),
    "CONTINUATION flood (CVE-2024-27316)": (continuation_flood, ENHANCE_YOUR_CALM),
    "SETTINGS flood": (
        lambda port: flood(port, lambda i: SettingsFrame(0).serialize(), 5000),
        ENHANCE_YOUR_CALM,
    ),
    "PING flood": (
        lambda port: flood(port, lambda i: PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize(), 5000),
        ENHANCE_YOUR_CALM,
    ),
    "WINDOW_UPDATE flood": (
        lambda port: flood(port, lambda i: WindowUpdateFrame(0, window_increment=1).serialize(), 5000),
        ENHANCE_YOUR_CALM,
    ),
    "empty DATA flood": (empty_data_flood, ENHANCE_YOUR_CALM),
    "a huge header list": (huge_header_list, ENHANCE_YOUR_CALM),
    "an HPACK bomb": (hpack_bomb, ENHANCE_YOUR_CALM),
    # h2 answers an HPACK decoding error with PROTOCOL_ERROR (RFC 9113 would say
    # COMPRESSION_ERROR): either way the connection, whose HPACK state is now unknown, ends.
    "an HPACK table past SETTINGS": (table_size_past_settings, PROTOCOL_ERROR),
    "too many concurrent streams": (too_many_streams, PROTOCOL_ERROR),
}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.alone
async def test_every_http2_attack_meets_its_limit_while_healthy_clients_keep_echoing() -> None:
    with hostile_server(**SERVER) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        echo_url = f"ws://127.0.0.1:{port}/echo"
        async with (
            healthy_canary(echo_url) as over_http11,
            healthy_canary(echo_url, http2=True) as over_http2,
        ):
            await trio.sleep(0.2)
            fds_before, rss_before = open_fds(server.proc.pid), server.rss()
            codes = {}
            for name, (attack, _expected) in ATTACKS.items():
                codes[name] = await attack(port)
            with trio.fail_after(5):  # the attackers' sockets closed on the server's side too
                while open_fds(server.proc.pid) > fds_before:
                    await trio.sleep(0.05)
            rss_after = server.rss()
        print(codes)
        assert codes == {name: expected for name, (_attack, expected) in ATTACKS.items()}
        assert over_http11.round_trips > 20 and over_http2.round_trips > 20
        assert rss_after - rss_before < 32 * 2**20, f"memory grew {(rss_after - rss_before) >> 20} MiB"


@pytest.mark.alone
async def test_a_zero_window_held_forever_ends_with_a_reset_not_a_stuck_handler() -> None:
    """A peer that opens no window never gets anything: keepalive finds it out (the ping
    cannot go either), and close_timeout resets the stream; the server holds at most
    write_limit for it meanwhile."""
    options = {**SERVER, "ping_interval": 0.2, "ping_timeout": 0.2, "close_timeout": 0.3}
    with hostile_server(**options) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        async with healthy_canary(f"ws://127.0.0.1:{port}/echo", http2=True):
            peer = await RawH2.connect(port, acknowledge=False, initial_window_size=0)
            sid = await peer.open_websocket("/echo")
            for _ in range(5):  # echoes the server cannot send back (within our window to it)
                await peer.send_message(sid, os.urandom(10_000))
            await peer.pump(lambda: sid in peer.resets, seconds=5)
            assert not peer.data.get(sid), "a zero window let nothing through"
            assert not peer.closed, "the stream was reset, the connection kept"
            await peer.aclose()


def test_the_limits_are_documented() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "http2.md").read_text()
    for name in [
        *LIMITS,
        "stream_window",
        "connection_window",
        "output_buffer",
        "idle_timeout",
        "rate_window",
    ]:
        assert f"`{name}`" in text, f"docs/http2.md does not name {name}"
