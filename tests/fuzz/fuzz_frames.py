"""Fuzz `FrameParser`: any bytes, any chunking, any limits.

Invariants: only `ProtocolError` escapes; a data frame's payload is within `max_payload`;
a control frame is whole and at most 125 bytes; the parser never holds more than it was fed.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from trio_ws.exceptions import ProtocolError
    from trio_ws.frames import FrameParser

#: Chunk sizes the first byte picks from: byte by byte, around headers, whole.
CHUNK_SIZES = (1, 2, 3, 7, 14, 100, 1000, 1 << 30)


def one_input(data: bytes) -> None:
    """data[0] picks the options and the chunk size; the rest is the wire."""
    if not data:
        return
    flags, wire = data[0], data[1:]
    require_mask = bool(flags & 1)
    allowed_rsv = (0, 0x40, 0x70, 0x40)[flags >> 1 & 3]
    max_payload = (None, 0, 125, 65536)[flags >> 3 & 3]
    step = CHUNK_SIZES[flags >> 5]
    parser = FrameParser(require_mask=require_mask, allowed_rsv=allowed_rsv)
    parser.max_payload = max_payload
    fed = 0
    try:
        for start in range(0, len(wire), step):
            chunk = wire[start : start + step]
            parser.feed(chunk)
            fed += len(chunk)
            while (frame := parser.next_frame()) is not None:
                if frame.opcode >= 0x8:
                    assert frame.fin and len(frame.payload) <= 125, frame
                elif max_payload is not None:
                    assert len(frame.payload) <= max_payload, (len(frame.payload), max_payload)
            assert parser.buffered <= fed
    except ProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
