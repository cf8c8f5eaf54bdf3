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
    A message not worth compressing goes out as the one uncompressed frame to every server.
    """

    __slots__ = ("_frames", "_opcode", "_payload", "_worth_compressing", "message")

    def __init__(self, message: Data) -> None:
        if isinstance(message, str):
            self._opcode, self._payload = Opcode.TEXT, message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self._opcode, self._payload = Opcode.BINARY, bytes(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}; send str or bytes-like")
        self.message = message
        self._frames: dict[object, bytes] = {}
        self._worth_compressing: bool | None = None

    def frame_for(self, ws: WebSocket) -> bytes | None:
        """The shared frame for `ws`, or None if `ws` must encode the message itself."""
        proto = ws._proto
        if proto.role is Role.CLIENT:
            return None
        deflate = proto.deflate
        key = None
        if deflate is not None:
            if self._worth_compressing is None:
                self._worth_compressing = deflate.worth_compressing(self._payload)
            if self._worth_compressing:
                key = deflate.shared_frame_key
                if key is None:
                    return None
        frame = self._frames.get(key)
        if frame is None:
            out = bytearray()
            if deflate is None or key is None:
                write_frame(out, self._opcode, self._payload)
            else:
                write_frame(out, self._opcode, deflate.compress(self._payload, True), rsv1=True)
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
