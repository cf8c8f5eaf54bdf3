"""`broadcast`: queue one message on many connections at once, never waiting."""

from __future__ import annotations

from collections.abc import Iterable

from .connection import WebSocket
from .frames import Opcode, write_frame
from .protocol import Data, Role

__all__ = ["broadcast"]


def broadcast(connections: Iterable[WebSocket], message: Data) -> int:
    """Queue `message` on every open connection that can take it; return how many did.

    A connection is skipped when it is closing, in the middle of sending a fragmented
    message, or has more than its `write_limit` waiting for the network: a slow client
    never slows the others, and never makes this wait. The frame is built once for all
    uncompressed server connections, and compressed once for each group of connections
    that compress without context takeover; others use their own compressor.
    """
    if isinstance(message, str):
        opcode, payload = Opcode.TEXT, message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        opcode, payload = Opcode.BINARY, bytes(message)
    else:
        raise TypeError(f"cannot broadcast {type(message).__name__}; broadcast str or bytes-like")
    frames: dict[object, bytes] = {}  # None: uncompressed; else a codec's shared_frame_key
    reached = 0
    for ws in connections:
        if not ws._ready_for_broadcast():
            continue
        proto = ws._proto
        deflate = proto.deflate
        key = None if deflate is None else deflate.shared_frame_key
        if proto.role is Role.CLIENT or (deflate is not None and key is None):
            proto.send(message)  # masked per frame, or its own compression context
        else:
            frame = frames.get(key)
            if frame is None:
                out = bytearray()
                if deflate is None:
                    write_frame(out, opcode, payload)
                else:
                    write_frame(out, opcode, deflate.compress(payload, True), rsv1=True)
                frame = frames[key] = bytes(out)
            proto.send_serialized(frame)
        ws._write_lot.unpark_all()
        reached += 1
    return reached
