"""The RFC 6455 frame codec (section 5): parse and serialize frames. Sans-I/O, no trio."""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass

from .exceptions import (
    CloseCode,
    PayloadTooBig,
    ProtocolError,
    is_valid_close_code,
)

__all__ = [
    "Opcode",
    "Frame",
    "BytesLike",
    "as_bytes",
    "FrameParser",
    "apply_mask",
    "write_frame",
    "serialize_frame",
    "parse_close",
    "serialize_close",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


_OPCODES = {int(op): op for op in Opcode}

BytesLike = bytes | bytearray | memoryview


def as_bytes(data: BytesLike) -> BytesLike:
    """`data` as a flat sequence of bytes, so that `len()` and slices count bytes.

    A memoryview of wider items (an `array('i')`, numpy's `.data`) or of several
    dimensions counts items, not bytes: it is cast to unsigned bytes (copied only when it
    is not contiguous).
    """
    if type(data) is memoryview and (data.format != "B" or data.ndim != 1):
        return data.cast("B") if data.c_contiguous else data.tobytes()
    return data


_MAX_CONTROL_PAYLOAD = 125

_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack
_unpack_h = struct.Struct("!H").unpack_from
_unpack_q = struct.Struct("!Q").unpack_from
_unpack_close_code = struct.Struct("!H").unpack_from


@dataclass(slots=True)
class Frame:
    """One WebSocket frame, payload unmasked."""

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


MASK_CHUNK = 2**14
"""Pure-Python masking works on this many bytes at a time (a multiple of 4)."""


def _apply_mask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR `data` with the 4-byte `mask` repeated: big-integer XOR, 16 KiB at a time.

    No per-byte loop: each chunk becomes one integer, and the repeated mask is converted
    once per call, not once per chunk.
    """
    length = len(data)
    if length <= MASK_CHUNK:
        if length == 0:
            return b""
        repeated = (mask * (length // 4 + 1))[:length]
        return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
            length, "little"
        )
    view = memoryview(data)
    key = int.from_bytes(mask * (MASK_CHUNK // 4), "little")
    out = bytearray(length)
    whole = length - length % MASK_CHUNK
    for start in range(0, whole, MASK_CHUNK):
        chunk = int.from_bytes(view[start : start + MASK_CHUNK], "little") ^ key
        out[start : start + MASK_CHUNK] = chunk.to_bytes(MASK_CHUNK, "little")
    if whole < length:  # MASK_CHUNK is a multiple of 4, so the mask phase starts over here
        out[whole:] = _apply_mask_python(view[whole:], mask)
    return bytes(out)


try:
    from ._speedups import apply_mask as _apply_mask_c
except ImportError:  # no compiler at install time: the pure-Python version serves
    _apply_mask_c = None

apply_mask = _apply_mask_c or _apply_mask_python
"""XOR `data` with the 4-byte `mask` repeated (RFC 6455 section 5.3): C where built."""


def write_frame(
    out: bytearray,
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = False,
) -> None:
    """Append one serialized frame to `out` (masked with a fresh random key if `mask`).

    `payload` must count bytes (see `as_bytes`).
    """
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        out.append(first)
        out.append(mask_bit | length)
    elif length < 65536:
        out += _pack_h(first, mask_bit | 126, length)
    else:
        out += _pack_q(first, mask_bit | 127, length)
    if mask:
        key = os.urandom(4)
        out += key
        out += apply_mask(payload, key)
    else:
        out += payload


def serialize_frame(frame: Frame, *, mask: bool = False) -> bytes:
    """Serialize any frame, RSV2 and RSV3 included (the codec's test surface)."""
    out = bytearray()
    write_frame(out, frame.opcode, frame.payload, fin=frame.fin, rsv1=frame.rsv1, mask=mask)
    out[0] |= (0x20 if frame.rsv2 else 0) | (0x10 if frame.rsv3 else 0)
    return bytes(out)


class FrameParser:
    """Incremental frame parser: `feed` bytes, then take frames from `next_frame`.

    Structural rules are checked from the header alone, before any payload is buffered:
    opcode, RSV bits, control frame size and fragmentation, masking direction, and the
    payload limit `max_payload` for data frames (which the protocol lowers as a
    fragmented message grows).
    """

    def __init__(self, *, require_mask: bool, allowed_rsv: int = 0) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._require_mask = require_mask
        self.allowed_rsv = allowed_rsv
        """RSV bits (0x40, 0x20, 0x10) that a negotiated extension allows."""
        self.max_payload: int | None = None
        """Largest payload accepted for a data frame; None means no limit."""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed into a frame."""
        return len(self._buf) - self._pos

    def discard(self) -> None:
        """Drop everything buffered: the connection will parse nothing more."""
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive.

        Raises `ProtocolError` (or its subclass `PayloadTooBig`) for a frame that breaks
        the rules; after that the parser must not be used again.
        """
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < 2:
            self._compact()
            return None
        first = buf[pos]
        second = buf[pos + 1]
        length = second & 0x7F
        header = 2
        if length == 126:
            if available < 4:
                self._compact()
                return None
            (length,) = _unpack_h(buf, pos + 2)
            header = 4
            if length < 126:
                raise ProtocolError("frame length not encoded minimally")
        elif length == 127:
            if available < 10:
                self._compact()
                return None
            (length,) = _unpack_q(buf, pos + 2)
            header = 10
            if length >> 63:
                raise ProtocolError("frame length has its most significant bit set")
            if length < 65536:
                raise ProtocolError("frame length not encoded minimally")
        opcode = _OPCODES.get(first & 0x0F)
        if opcode is None:
            raise ProtocolError(f"reserved opcode {first & 0x0F:#x}")
        fin = bool(first & 0x80)
        rsv = first & 0x70
        if rsv & ~self.allowed_rsv:
            raise ProtocolError("reserved bits set without a negotiated extension")
        if opcode >= 0x8:
            if not fin:
                raise ProtocolError("fragmented control frame")
            if length > _MAX_CONTROL_PAYLOAD:
                raise ProtocolError("control frame payload over 125 bytes")
        elif self.max_payload is not None and length > self.max_payload:
            raise PayloadTooBig(f"frame of {length} bytes exceeds the size limit")
        masked = bool(second & 0x80)
        if masked != self._require_mask:
            raise ProtocolError("client frame not masked" if self._require_mask else "server frame masked")
        if masked:
            header += 4
        end = pos + header + length
        if len(buf) < end:
            self._compact()
            return None
        if masked:
            key = bytes(buf[pos + header - 4 : pos + header])
            payload = apply_mask(memoryview(buf)[pos + header : end], key)
        else:
            payload = bytes(buf[pos + header : end])
        self._pos = end
        return Frame(
            opcode,
            payload,
            fin,
            bool(rsv & 0x40),
            bool(rsv & 0x20),
            bool(rsv & 0x10),
        )

    def _compact(self) -> None:
        """Drop the parsed prefix so the buffer holds only the partial frame."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a close frame payload into (code, reason); 1005 when it carries no code."""
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte")
    (code,) = _unpack_close_code(payload)
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("close reason is not valid UTF-8", CloseCode.INVALID_DATA) from exc
    return code, reason


def serialize_close(code: int, reason: str = "") -> bytes:
    """Encode a close payload; 1005 encodes as an empty payload."""
    if code == CloseCode.NO_STATUS_RCVD and not reason:
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"{code} is not a close code that can be sent")
    encoded = reason.encode("utf-8")
    if len(encoded) > _MAX_CONTROL_PAYLOAD - 2:
        raise ValueError("close reason must be at most 123 bytes once encoded as UTF-8")
    return struct.pack("!H", code) + encoded
