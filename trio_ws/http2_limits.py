"""`Http2Limits`: what one HTTP/2 connection may cost, each limit named. No I/O, no h2."""

from __future__ import annotations

import dataclasses

__all__ = ["Http2Limits"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Http2Limits:
    """The bounds of one HTTP/2 connection (RFC 8441 WebSockets and plain requests).

    A peer past a rate limit gets GOAWAY with ENHANCE_YOUR_CALM and the connection is
    closed; its neighbours on other connections never notice. Rates are counted over
    `rate_window` seconds.
    """

    max_concurrent_streams: int = 128
    """Streams open at once, advertised in SETTINGS. A stream counts until its handler has
    finished, even after the peer reset it: a new one past the limit is refused with
    RST_STREAM (REFUSED_STREAM), so resets cannot pile up handlers (CVE-2023-44487)."""
    max_header_list_size: int = 16 * 1024
    """Bytes of a request's decoded header list (advertised in SETTINGS; more is a
    connection error): the same bound as an HTTP/1.1 request head."""
    max_header_frames: int = 16
    """HEADERS plus CONTINUATION frames of one header block; more is a connection error,
    however small each frame is (CVE-2024-27316)."""
    header_table_size: int = 4096
    """The HPACK dynamic table the peer may fill (advertised in SETTINGS)."""
    stream_window: int = 256 * 1024
    """Bytes a peer may send on one stream before we read them: the receive buffer of one
    WebSocket. Its WINDOW_UPDATEs wait while the WebSocket's inbox is full
    (`max_queue`, `max_queue_bytes`), which is how backpressure reaches the peer."""
    connection_window: int = 16 * 1024 * 1024
    """Bytes a peer may have in flight on the whole connection. Data is acknowledged on
    the connection as it arrives, so a stream whose reader is slow holds back only its
    own window, never its neighbours'."""
    max_resets_per_window: int = 200
    """Streams the peer may reset while their exchange is under way (before the answer, or
    while the WebSocket is open), or have refused for going past `max_concurrent_streams`,
    in `rate_window` (the rapid reset attack). A WebSocket reset once its closing
    handshake is done (how trio_ws's client closes) is not counted."""
    max_control_frames_per_window: int = 2000
    """SETTINGS, PING, WINDOW_UPDATE, PRIORITY and empty DATA frames the peer may send in
    `rate_window`: each costs work and carries nothing (floods)."""
    rate_window: float = 10.0
    """Seconds over which the two rates above are counted."""
    output_buffer: int = 256 * 1024
    """Bytes of frames waiting for the socket. Past it, streams wait to send and the
    connection stops reading (a peer that does not read our PING and SETTINGS answers
    stops getting them)."""
    idle_timeout: float | None = 120.0
    """Seconds a connection with no stream open is kept before GOAWAY; None: no limit.
    Before its first stream, a server's connection gets its `open_timeout` at most."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "idle_timeout" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Http2Limits.{field.name} must be a positive number, not {value!r}")
        if not 65535 <= self.stream_window <= 2**31 - 1:
            raise ValueError(f"Http2Limits.stream_window must be 65535 to 2**31-1, not {self.stream_window}")
        if not 65535 <= self.connection_window <= 2**31 - 1:
            raise ValueError(
                f"Http2Limits.connection_window must be 65535 to 2**31-1, not {self.connection_window}"
            )
