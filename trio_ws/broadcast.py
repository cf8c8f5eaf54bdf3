"""`broadcast`: queue one message on many connections at once, never waiting."""

from __future__ import annotations

from collections.abc import Iterable

from .connection import WebSocket
from .frames import Opcode, write_frame
from .protocol import Data, Role

__all__ = ["broadcast", "FrameCache"]


class FrameCache:
    """One message, framed at most once per group of connections that frame it alike.

    Uncompressed server connections share one frame; compressed ones without context
    takeover share one per settings; the others (clients, or compression with context
    takeover) must encode the message themselves, and `frame_for` returns None for them.
    """

    __slots__ = ("_frames", "_opcode", "_payload", "message")

    def __init__(self, message: Data) -> None:
        if isinstance(message, str):
            self._opcode, self._payload = Opcode.TEXT, message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self._opcode, self._payload = Opcode.BINARY, bytes(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}; send str or bytes-like")
        #: The message as it was when this was made: a str, or an immutable copy of the
        #: bytes, so that a caller reusing its buffer (or releasing its memoryview) changes
        #: nothing that is still queued.
        self.message: str | bytes = message if isinstance(message, str) else self._payload
        self._frames: dict[object, bytes] = {}

    def frame_for(self, ws: WebSocket) -> bytes | None:
        """The shared frame for `ws`, or None if `ws` must encode the message itself."""
        proto = ws._proto
        deflate = proto.deflate
        key = None if deflate is None else deflate.shared_frame_key
        if proto.role is Role.CLIENT or (deflate is not None and key is None):
            return None
        frame = self._frames.get(key)
        if frame is None:
            out = bytearray()
            if deflate is None:
                write_frame(out, self._opcode, self._payload)
            else:
                write_frame(out, self._opcode, deflate.compress_message(self._payload), rsv1=True)
            frame = self._frames[key] = bytes(out)
        return frame


def broadcast(connections: Iterable[WebSocket], message: Data) -> int:
    """Queue `message` on every open connection that can take it; return how many did.

    A connection is skipped when it is closing, in the middle of sending a fragmented
    message, or has more than its `write_limit` waiting for the network: a slow client
    never slows the others, and never makes this wait. The frame is built once for all
    uncompressed server connections, and compressed once for each group of connections
    that compress without context takeover; others use their own compressor.
    """
    frames = FrameCache(message)
    reached = 0
    for ws in connections:
        if ws._ready_for_broadcast():
            ws._queue_cached(frames)
            reached += 1
    return reached
