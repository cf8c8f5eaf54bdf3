"""What a WebSocket message is, as a type: `Data` to send, `Message` received, `Fragment`.

A module of its own, importing nothing of the package, so that the modules that only name these types need
not import the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Data", "Message", "Fragment", "is_bytes_like"]

Data = str | bytes | bytearray | memoryview
"""What may be sent as one message: `str` as text, bytes-like as binary."""

Message = str | bytes
"""A whole message received: `str` for a text message, `bytes` for a binary one."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of a message, given while fragments are streamed (`recv_streaming()`):
    `str` for text (complete code points), `bytes` for binary; `fin` ends the message."""

    data: str | bytes
    fin: bool

    def __len__(self) -> int:
        return len(self.data)


def is_bytes_like(obj: object) -> bool:
    """Whether `obj` supports the buffer protocol (array.array, numpy arrays, ...)."""
    try:
        memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True
