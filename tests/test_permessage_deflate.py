"""permessage-deflate (RFC 7692): the negotiation table, the codec, and the bomb."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ws.exceptions import PayloadTooBig
from trio_ws.extensions.permessage_deflate import (
    DeflateConfig,
    DeflateParameters,
    NegotiationError,
    PerMessageDeflate,
    client_accept,
    client_offer,
    parse_extensions,
    server_accept,
)
from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame
from trio_ws.protocol import Protocol, Role, State

DEFAULT = DeflateConfig()
FULL = DeflateConfig(server_max_window_bits=15, client_max_window_bits=15)


def accept(header: str, config: DeflateConfig = DEFAULT) -> str | None:
    params = server_accept(parse_extensions([header]), config)
    return None if params is None else params.header()


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        # The plain offer: our window limit for the server side; no client limit allowed.
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        ("permessage-deflate; client_max_window_bits",
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        ("permessage-deflate; client_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"),
        ("permessage-deflate; server_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=9"),
        ("permessage-deflate; server_max_window_bits=15",
         "permessage-deflate; server_max_window_bits=12"),
        ("permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"),
        ("permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"),
        ('permessage-deflate; server_max_window_bits="10"',
         "permessage-deflate; server_max_window_bits=10"),
        # The first acceptable offer wins; invalid ones are declined, not fatal.
        ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=10"),
        ("permessage-deflate; foo, permessage-deflate; server_max_window_bits=11",
         "permessage-deflate; server_max_window_bits=11"),
        ("permessage-deflate; server_max_window_bits=8, permessage-deflate",
         "permessage-deflate; server_max_window_bits=12"),
    ],
)  # fmt: skip
def test_server_response_to_offer(offer: str, response: str) -> None:
    assert accept(offer) == response


def test_server_with_full_windows_names_no_limits() -> None:
    assert accept("permessage-deflate; client_max_window_bits", FULL) == "permessage-deflate"


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot compress with 8
        "x-webkit-deflate-frame",
        "",
    ],
)
def test_server_declines_invalid_or_unusable_offers(offer: str) -> None:
    assert accept(offer) is None


def test_client_offer_states_our_limits() -> None:
    assert client_offer(DEFAULT) == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    assert client_offer(FULL) == "permessage-deflate; client_max_window_bits"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("permessage-deflate; server_max_window_bits=12",
         DeflateParameters(server_max_window_bits=12)),
        ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
         DeflateParameters(server_max_window_bits=10, client_max_window_bits=9)),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=12", DeflateParameters(True, True, 12, None)),
    ],
)  # fmt: skip
def test_client_accepts_valid_responses(response: str, expected: DeflateParameters) -> None:
    assert client_accept(parse_extensions([response]), DEFAULT) == expected


@pytest.mark.parametrize(
    ("response", "why"),
    [
        ("permessage-deflate", "server_max_window_bits"),  # we asked for a limit
        ("permessage-deflate; server_max_window_bits=13", "more than was offered"),
        ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=13", "more than"),
        ("permessage-deflate; server_max_window_bits=12; client_max_window_bits", "needs a value"),
        ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=8", "zlib"),
        ("permessage-deflate; server_max_window_bits=12; bogus", "unknown"),
        ("permessage-deflate; server_max_window_bits=12; server_max_window_bits=12", "duplicate"),
        ("permessage-deflate; server_max_window_bits=12, permessage-deflate", "not offered"),
        ("x-other", "not offered"),
    ],
)
def test_client_rejects_invalid_responses(response: str, why: str) -> None:
    with pytest.raises(NegotiationError, match=why):
        client_accept(parse_extensions([response]), DEFAULT)


def test_client_insists_on_server_no_context_takeover_when_it_asked() -> None:
    config = DeflateConfig(server_no_context_takeover=True)
    with pytest.raises(NegotiationError):
        client_accept(parse_extensions(["permessage-deflate; server_max_window_bits=12"]), config)


def pair(params: DeflateParameters) -> tuple[Protocol, Protocol]:
    client = Protocol(Role.CLIENT, deflate=PerMessageDeflate(params, is_server=False, config=DEFAULT))
    server = Protocol(Role.SERVER, deflate=PerMessageDeflate(params, is_server=True, config=DEFAULT))
    return client, server


def large_message(size: int, seed: int, compressible: bool) -> bytes:
    """Random bytes (which deflate cannot shrink) or repetitive text, at least 8 KiB."""
    if compressible:
        return (b"%d lines of compressible text " % seed) * (size // 20)
    return random.Random(seed).randbytes(size)


LARGE_MESSAGES = st.builds(
    large_message, st.integers(8 * 1024, 40 * 1024), st.integers(0, 2**32), st.booleans()
)


@given(
    st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300), LARGE_MESSAGES), max_size=6),
    st.booleans(),
    st.booleans(),
)
def test_compressed_round_trips(messages: list[str | bytes], server_nct: bool, client_nct: bool) -> None:
    client, server = pair(DeflateParameters(server_nct, client_nct, 12, 12))
    for message in messages:
        client.send(message)
        assert server.receive_data(client.data_to_send()) == [message]
        server.send(message)
        assert client.receive_data(server.data_to_send()) == [message]


@pytest.mark.parametrize("server_nct", [False, True])
def test_incompressible_messages_are_stored_and_the_windows_stay_in_step(server_nct: bool) -> None:
    client, server = pair(DeflateParameters(server_nct, False, 12, 12))
    text, noise = large_message(64 * 1024, 1, True), large_message(64 * 1024, 2, False)
    echo_of_tail = noise[-2000:] * 2  # refers back into the stored message when context is kept
    for message in (text, noise, echo_of_tail, text, noise[:100]):
        server.send(message)
        wire = server.data_to_send()
        parser = FrameParser(require_mask=False, allowed_rsv=0x40)
        parser.feed(wire)
        frame = parser.next_frame()
        assert frame is not None and parser.next_frame() is None and frame.rsv1
        if message is noise:  # stored blocks: 5 bytes of header per 64 KiB, and one byte to end
            assert len(frame.payload) == len(noise) + 5 * 2 + 1
        elif message is echo_of_tail and not server_nct:
            assert len(frame.payload) < 100
        elif message is text:
            assert len(frame.payload) < len(message) // 4
        assert client.receive_data(wire) == [message]


def test_fragmented_compressed_message_sets_rsv1_on_the_first_frame_only() -> None:
    client, server = pair(DeflateParameters(server_max_window_bits=12))
    client.send("hello ", fin=False)
    client.send("world", fin=True)
    wire = client.data_to_send()
    assert wire[0] & 0x40  # RSV1 on the first frame
    assert server.receive_data(wire) == ["hello world"]


@pytest.mark.parametrize(
    "frame",
    [
        Frame(Opcode.PING, b"", rsv1=True),
        Frame(Opcode.CONTINUATION, b"x", rsv1=True),
    ],
)
def test_rsv1_where_it_does_not_belong_is_a_protocol_error(frame: Frame) -> None:
    _, server = pair(DeflateParameters())
    if frame.opcode is Opcode.CONTINUATION:
        server.receive_data(serialize_frame(Frame(Opcode.TEXT, b"", fin=False, rsv1=True), mask=True))
    server.receive_data(serialize_frame(frame, mask=True))
    assert (server.state, server.close_code) == (State.CLOSED, 1002)


def test_garbage_compressed_data_fails_with_1007() -> None:
    _, server = pair(DeflateParameters())
    server.receive_data(serialize_frame(Frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True), mask=True))
    assert (server.state, server.close_code) == (State.CLOSED, 1007)


def test_inflate_stops_at_the_limit() -> None:
    codec = PerMessageDeflate(DeflateParameters(), is_server=True, config=FULL)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * 2**24) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 20_000
    with pytest.raises(PayloadTooBig):
        codec.decompress(bomb[:-4], True, 2**20)


# ---- every configuration against every other ---------------------------------------------

configs = st.builds(
    DeflateConfig,
    server_max_window_bits=st.integers(9, 15),
    client_max_window_bits=st.integers(9, 15),
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    level=st.integers(-1, 9),
    mem_level=st.integers(1, 9),
)


@given(
    client_config=configs,
    server_config=configs,
    messages=st.lists(st.binary(max_size=2000) | st.text(max_size=500), max_size=5),
)
def test_any_client_configuration_agrees_with_any_server_configuration(
    client_config: DeflateConfig, server_config: DeflateConfig, messages: list[str | bytes]
) -> None:
    """Our client's offer, under any valid configuration, gets an answer from our server,
    under any valid configuration, that the client accepts; the agreed windows are ones
    zlib can compress with; and messages go both ways intact, several in a row (so that
    context takeover, where agreed, carries over)."""
    params = server_accept(parse_extensions([client_offer(client_config)]), server_config)
    assert params is not None, "our server declined our own client's offer"
    agreed = client_accept(parse_extensions([params.header()]), client_config)
    assert agreed == params
    for bits in (params.server_max_window_bits, params.client_max_window_bits):
        assert bits is None or 9 <= bits <= 15
    server = PerMessageDeflate(params, is_server=True, config=server_config)
    client = PerMessageDeflate(agreed, is_server=False, config=client_config)
    for message in messages:
        data = message.encode() if isinstance(message, str) else message
        assert client.decompress(server.compress_message(data), True, None) == data
        assert server.decompress(client.compress_message(data), True, None) == data


@pytest.mark.parametrize(
    "values",
    [
        {"server_max_window_bits": 8},  # RFC 7692 allows it; zlib cannot compress with it
        {"client_max_window_bits": 16},
        {"server_max_window_bits": "12"},
        {"client_max_window_bits": True},
        {"level": 10},
        {"level": -2},
        {"mem_level": 0},
        {"mem_level": 10},
        {"server_no_context_takeover": 1},
    ],
)
def test_a_configuration_zlib_cannot_use_is_refused_when_made(values: dict[str, object]) -> None:
    """A clear error at once, naming the field, instead of one on the first message (or a
    window promised to the peer that the compressor does not keep to)."""
    (name,) = values
    with pytest.raises(ValueError, match=f"DeflateConfig.{name} must be"):
        DeflateConfig(**values)  # type: ignore[arg-type]
