"""The frame codec: round trips under any chunking, and garbage never crashes the parser."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ws import frames as codec
from trio_ws.exceptions import PayloadTooBig, ProtocolError
from trio_ws.frames import (
    Frame,
    FrameParser,
    Opcode,
    parse_close,
    serialize_close,
    serialize_frame,
)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    opcode = draw(st.sampled_from(list(Opcode)))
    control = opcode >= 0x8
    size = draw(st.sampled_from([0, 1, 125, 126, 65535, 65536, 70000])) if not control else 0
    payload = (
        draw(st.binary(max_size=125))
        if control or size == 0
        else draw(st.binary(min_size=size, max_size=size))
    )
    return Frame(
        opcode,
        payload,
        fin=True if control else draw(st.booleans()),
        rsv1=draw(st.booleans()),
        rsv2=draw(st.booleans()),
        rsv3=draw(st.booleans()),
    )


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def parse_all(parser: FrameParser, chunks: list[bytes]) -> list[Frame]:
    out = []
    for chunk in chunks:
        parser.feed(chunk)
        while (frame := parser.next_frame()) is not None:
            out.append(frame)
    return out


@given(
    st.lists(frames(), min_size=1, max_size=4), st.booleans(), st.lists(st.integers(0, 10**6), max_size=20)
)
def test_round_trip_in_any_chunking(sent: list[Frame], masked: bool, cuts: list[int]) -> None:
    wire = b"".join(serialize_frame(f, mask=masked) for f in sent)
    parser = FrameParser(require_mask=masked, allowed_rsv=0x70)
    assert parse_all(parser, chunked(wire, cuts)) == sent
    assert parser.buffered == 0


@given(st.binary(max_size=300), st.booleans(), st.integers(0, 0x70), st.none() | st.integers(0, 200))
def test_arbitrary_bytes_yield_frames_or_protocol_error(
    data: bytes, require_mask: bool, allowed_rsv: int, max_payload: int | None
) -> None:
    parser = FrameParser(require_mask=require_mask, allowed_rsv=allowed_rsv & 0x70)
    parser.max_payload = max_payload
    parser.feed(data)
    try:
        while (frame := parser.next_frame()) is not None:
            assert isinstance(frame, Frame)
    except ProtocolError:
        pass


MASKERS = [pytest.param(codec._apply_mask_python, id="python")]
if codec._apply_mask_c is not None:
    MASKERS.append(pytest.param(codec._apply_mask_c, id="c"))


def test_the_c_speedup_is_built_where_a_compiler_exists() -> None:
    if shutil.which("cc") or shutil.which("gcc"):
        assert codec._apply_mask_c is not None
        assert codec.apply_mask is codec._apply_mask_c


@pytest.mark.parametrize("masker", MASKERS)
@given(data=st.binary(max_size=40_000), key=st.binary(min_size=4, max_size=4))
def test_mask_is_its_own_inverse_and_matches_bytewise_xor(masker: Any, data: bytes, key: bytes) -> None:
    masked = masker(data, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert masker(bytearray(masked), key) == data
    assert masker(memoryview(masked), key) == data


@pytest.mark.parametrize("masker", MASKERS)
def test_the_codec_round_trips_with_each_masker(masker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "apply_mask", masker)
    sent = [Frame(Opcode.BINARY, bytes(range(256)) * 300), Frame(Opcode.TEXT, b"short")]
    wire = b"".join(serialize_frame(f, mask=True) for f in sent)
    assert parse_all(FrameParser(require_mask=True), [wire[:1000], wire[1000:]]) == sent


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x83\x00", "reserved opcode"),
        (b"\x8b\x00", "reserved opcode"),
        (b"\xc1\x00", "reserved bits"),
        (b"\x09\x00", "fragmented control"),
        (b"\x89\x7e\x00\x7e" + b"x" * 126, "over 125"),
        (b"\x81\x7e\x00\x05hello", "minimally"),
        (b"\x81\x7f\x80" + b"\x00" * 7, "most significant bit"),
    ],
)
def test_structural_violations(wire: bytes, message: str) -> None:
    parser = FrameParser(require_mask=False)
    parser.feed(wire)
    with pytest.raises(ProtocolError, match=message):
        parser.next_frame()


def test_server_rejects_unmasked_and_client_rejects_masked() -> None:
    server = FrameParser(require_mask=True)
    server.feed(serialize_frame(Frame(Opcode.TEXT, b"hi"), mask=False))
    with pytest.raises(ProtocolError, match="not masked"):
        server.next_frame()
    client = FrameParser(require_mask=False)
    client.feed(serialize_frame(Frame(Opcode.TEXT, b"hi"), mask=True))
    with pytest.raises(ProtocolError, match="masked"):
        client.next_frame()


def test_size_limit_is_checked_from_the_header_alone() -> None:
    parser = FrameParser(require_mask=False)
    parser.max_payload = 1000
    parser.feed(b"\x82\x7f" + (2**40).to_bytes(8, "big"))  # announces 1 TiB, sends nothing
    with pytest.raises(PayloadTooBig):
        parser.next_frame()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x0f\xa0bye", (4000, "bye")),
        (b"\x03\xf3", (1011, "")),
    ],
)
def test_parse_valid_close(payload: bytes, expected: tuple[int, str]) -> None:
    assert parse_close(payload) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        (b"\x00\x00", 1002),
        (b"\x03\xe7", 1002),  # 999
        (b"\x03\xec", 1002),  # 1004
        (b"\x03\xed", 1002),  # 1005 may not be sent
        (b"\x03\xee", 1002),  # 1006 may not be sent
        (b"\x03\xf7", 1002),  # 1015 may not be sent
        (b"\x07\xd0", 1002),  # 2000
        (b"\x13\x88", 1002),  # 5000
        (b"\x03\xe8\xce\xba\xe1\xbd", 1007),  # truncated UTF-8 reason
    ],
)
def test_parse_invalid_close(payload: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(payload)
    assert info.value.code == code


def test_serialize_close_validates() -> None:
    assert serialize_close(1000, "ok") == b"\x03\xe8ok"
    with pytest.raises(ValueError):
        serialize_close(1006)
    with pytest.raises(ValueError):
        serialize_close(1000, "x" * 124)
