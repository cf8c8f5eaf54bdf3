"""`broadcast`: queue one message on many connections at once, never waiting."""

from __future__ import annotations

from collections.abc import Iterable

from .connection import WebSocket
from .messages import Data
from .prepared import PreparedMessage

__all__ = ["broadcast"]


def broadcast(connections: Iterable[WebSocket], message: Data | PreparedMessage) -> int:
    """Queue `message` on every open connection that can take it; return how many did.

    A connection is skipped when it is closing, in the middle of sending a fragmented
    message, or has more than its `write_limit` waiting for the network: a slow client
    never slows the others, and never makes this wait. The frame is built once for all
    uncompressed server connections, and compressed once for each group of connections
    that compress without context takeover; others use their own compressor.
    """
    prepared = message if isinstance(message, PreparedMessage) else PreparedMessage(message)
    return sum(ws.try_send_nowait(prepared) for ws in connections)
