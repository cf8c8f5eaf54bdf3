"""`PreparedMessage`: one message framed at most once per group of connections that would
frame it alike, for fan-out (`broadcast`, the hub). It depends on the sans-I/O layer only:
each connection's `Protocol` says which group it is in (`framing_key`) and builds the
group's frame."""

from __future__ import annotations

from .frames import Opcode
from .messages import Data
from .protocol import Protocol

__all__ = ["PreparedMessage"]


class PreparedMessage:
    """A whole message to send to many connections: `ws.try_send_nowait(prepared)` or
    `await ws.send(prepared)`.

    Uncompressed server connections share one frame; compressed ones without context
    takeover share one per settings; the others (clients, whose frames are masked, and
    compression with context takeover) encode the message themselves.
    """

    __slots__ = ("_frames", "message", "opcode", "payload")

    def __init__(self, message: Data) -> None:
        if isinstance(message, str):
            self.opcode, self.payload = Opcode.TEXT, message.encode("utf-8")
        elif isinstance(message, bytes | bytearray | memoryview):
            self.opcode, self.payload = Opcode.BINARY, bytes(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}; send str or bytes-like")
        self.message: str | bytes = message if isinstance(message, str) else self.payload
        """The message as it was when this was made: a str, or an immutable copy of the bytes, so that a
        caller reusing its buffer (or releasing its memoryview) changes nothing that is still queued."""
        self._frames: dict[object, bytes] = {}

    def frame_for(self, protocol: Protocol) -> bytes | None:
        """The frame shared by `protocol`'s group, or None if it must encode the message itself."""
        key = protocol.framing_key
        if key is None:
            return None
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = protocol.shared_frame(self.opcode, self.payload)
        return frame

    def __repr__(self) -> str:
        return f"<PreparedMessage {self.opcode.name} {len(self.payload)} bytes, {len(self._frames)} framings>"
