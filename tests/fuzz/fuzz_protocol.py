"""Fuzz `Protocol.receive_data`: both roles, deflate on and off, arbitrary chunking.

Invariants: nothing escapes (a violation fails the connection instead); a delivered message
is at most `max_size`; the message in assembly stays within `max_size`; once every event is
taken, what stays buffered is part of one frame; the output is well-formed frames, masked
by the client only, with nothing after a close frame; a closed connection ends with 1002,
1007 or 1009 unless the peer closed it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from trio_ws.extensions.permessage_deflate import (
        DeflateConfig,
        PerMessageDeflate,
        parse_extensions,
        server_accept,
    )
    from trio_ws.frames import FrameParser, Opcode
    from trio_ws.messages import Fragment
    from trio_ws.protocol import Close, Ping, Pong, Protocol, Role, State

MAX_SIZE = 300
CONFIGS = [
    DeflateConfig(),
    DeflateConfig(client_no_context_takeover=True, server_no_context_takeover=True),
    DeflateConfig(server_max_window_bits=9, client_max_window_bits=15),
]


def codec(config: DeflateConfig, role: Role) -> PerMessageDeflate:
    offer = "permessage-deflate; client_max_window_bits"
    params = server_accept(parse_extensions([offer]), config)
    assert params is not None
    return PerMessageDeflate(params, is_server=role is Role.SERVER, config=config)


def check_output(out: bytes, role: Role) -> None:
    parser = FrameParser(require_mask=role is Role.CLIENT)
    parser.max_payload = None
    parser.feed(out)
    closed = False
    while (frame := parser.next_frame()) is not None:
        assert not closed, "a frame after the close frame"
        closed = frame.opcode is Opcode.CLOSE
    assert parser.buffered == 0, "half a frame in the output"


def one_input(data: bytes) -> None:
    """data[0] picks the role, deflate, the chunk size and streaming; the rest is the peer's wire."""
    if not data:
        return
    flags, wire = data[0], data[1:]
    role = Role.SERVER if flags & 1 else Role.CLIENT
    deflate = codec(CONFIGS[(flags >> 2 & 3) % 3], role) if flags & 2 else None
    step = (1, 2, 5, 13, 64, 200, 1000, 1 << 30)[flags >> 4 & 7]
    proto = Protocol(role, max_size=MAX_SIZE, deflate=deflate)
    for index, start in enumerate(range(0, len(wire), step)):
        chunk = wire[start : start + step]
        stream = bool(flags & 0x80) and index % 2 == 1  # a recv_streaming() comes and goes
        for event in proto.receive_data(chunk, stream=stream):
            assert isinstance(event, (str, bytes, Fragment, Ping, Pong, Close)), event
            data = event.data if isinstance(event, Fragment) else event
            if isinstance(data, (str, bytes)):
                size = len(data.encode()) if isinstance(data, str) else len(data)
                # A streamed text fragment may carry up to 3 bytes of a code point cut before it.
                assert size <= MAX_SIZE + (3 if isinstance(event, Fragment) else 0), size
        assert proto.assembling <= MAX_SIZE
        assert proto.buffered - proto.assembling <= MAX_SIZE + 14
        check_output(bytes(proto.data_to_send()), role)
    if proto.state is State.CLOSED and proto.close_rcvd is None:
        assert proto.close_code in (1002, 1007, 1009), proto.close_code


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
