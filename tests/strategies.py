"""Hypothesis strategies shared by the property tests: valid wire first, then corruption.

Hypothesis draws from a buffer of about 8 KiB, so a payload of 65,536 bytes cannot be drawn
byte by byte: sizes are drawn (boundaries on purpose) and the bytes come from a drawn seed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st

from trio_ws.frames import MASK_CHUNK, Frame, Opcode, serialize_frame


def examples(n: int) -> int:
    """`n` examples under the default profile, scaled up under the CI profile."""
    return n * settings.default.max_examples // 100


#: Payload sizes where the codec changes behaviour: 7/16/64-bit lengths, the mask chunk.
BOUNDARY_SIZES = (
    0,
    1,
    2,
    3,
    4,
    5,
    125,
    126,
    127,
    65535,
    65536,
    65537,
    MASK_CHUNK - 1,
    MASK_CHUNK,
    MASK_CHUNK + 1,
)


def sized_bytes(sizes: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """Bytes of a drawn size, generated from a drawn seed (any size, cheaply)."""
    return st.builds(lambda seed, size: random.Random(seed).randbytes(size), st.integers(0, 2**32), sizes)


@st.composite
def payloads(draw: st.DrawFn, max_size: int = 70_000) -> bytes:
    """Payloads whose size class is drawn evenly: small, exactly at a boundary, or anywhere
    in the 7-bit, 16-bit or 64-bit length range (up to `max_size`)."""
    ranges = [(0, 125), (126, 65535), (65536, max_size)]
    classes = ["small", "boundary"] + [f"{lo}-{hi}" for lo, hi in ranges if lo <= max_size]
    kind = draw(st.sampled_from(classes))
    if kind == "small":
        return draw(st.binary(max_size=64))
    if kind == "boundary":
        return draw(sized_bytes(st.sampled_from([n for n in BOUNDARY_SIZES if n <= max_size])))
    lo, hi = (int(n) for n in kind.split("-"))
    return draw(sized_bytes(st.integers(lo, min(hi, max_size))))


@st.composite
def frames(draw: st.DrawFn, *, max_size: int = 70_000) -> Frame:
    """Any well-formed frame (RSV bits included), for the codec."""
    opcode = draw(st.sampled_from(list(Opcode)))
    control = opcode >= 0x8
    payload = draw(st.binary(max_size=125) if control else payloads(max_size))
    return Frame(
        opcode,
        payload,
        fin=True if control else draw(st.booleans()),
        rsv1=draw(st.booleans()),
        rsv2=draw(st.booleans()),
        rsv3=draw(st.booleans()),
    )


@st.composite
def corrupted(draw: st.DrawFn, wire: bytes) -> bytes:
    """`wire` with up to three mutations: bit flips, cuts, inserted or duplicated bytes."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            data[at % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given points (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@st.composite
def text_payloads(draw: st.DrawFn) -> bytes:
    """UTF-8 text, or (sometimes) bytes that are not valid UTF-8."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=40))
    return draw(st.text(max_size=40)).encode("utf-8")


@st.composite
def message_wire(draw: st.DrawFn, *, masked: bool, max_size: int) -> bytes:
    """A valid sequence of frames a peer may send: messages (some fragmented, with empty
    fragments and control frames between them), pings, pongs, maybe a close at the end."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "binary", "fragmented", "ping", "pong"]))
        if kind == "text":
            out += serialize_frame(Frame(Opcode.TEXT, draw(text_payloads())), mask=masked)
        elif kind == "binary":
            out += serialize_frame(Frame(Opcode.BINARY, draw(payloads(max_size * 2))), mask=masked)
        elif kind == "fragmented":
            opcode = draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
            data = draw(text_payloads() if opcode is Opcode.TEXT else payloads(max_size * 2))
            cuts = draw(st.lists(st.integers(0, len(data)), max_size=4))
            parts = chunked(data, cuts) + [b""] * draw(st.integers(0, 2))
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                frame_opcode = opcode if i == 0 else Opcode.CONTINUATION
                out += serialize_frame(Frame(frame_opcode, part, fin=last), mask=masked)
                if not last and draw(st.booleans()):
                    out += serialize_frame(Frame(Opcode.PING, b"between"), mask=masked)
        else:
            opcode = Opcode.PING if kind == "ping" else Opcode.PONG
            out += serialize_frame(Frame(opcode, draw(st.binary(max_size=125))), mask=masked)
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1005, 1006, 1011, 3000, 4999, 999, 5000]))
        payload = b"" if code == 1005 else code.to_bytes(2, "big") + draw(text_payloads())[:20]
        out += serialize_frame(Frame(Opcode.CLOSE, payload), mask=masked)
    return bytes(out)


@dataclass
class Outcomes:
    """Counts what each example of a property did, to check the branches are reached."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: int = 0

    def reset(self) -> None:
        self.counts.clear()
        self.examples = 0

    def saw(self, *kinds: str) -> None:
        self.examples += 1
        self.counts.update(set(kinds))

    def share(self, kind: str) -> float:
        return self.counts[kind] / max(self.examples, 1)

    def report(self, name: str) -> str:
        shares = ", ".join(f"{k} {self.share(k):.0%}" for k, _ in self.counts.most_common())
        return f"{name}: {self.examples} examples; {shares}"

    def require(self, name: str, **minimum: float) -> None:
        """Assert each named branch was reached in at least the given share of examples."""
        print(self.report(name))
        for kind, share in minimum.items():
            assert self.share(kind) >= share, (
                f"{name} reached {kind!r} in {self.share(kind):.1%}: {self.report(name)}"
            )
