"""`FrameGuard`: the per-connection limits h2 does not keep itself, counted frame by
frame on the bytes a peer sends, before h2 parses them. Sans-I/O: no trio, no h2.

It reads only each frame's 9-byte header (length, type, flags; RFC 9113 section 4.1)
and counts the frames of one header block (CONTINUATION flood, CVE-2024-27316), and
frames that cost work but carry nothing (SETTINGS, PING, WINDOW_UPDATE, PRIORITY and
empty DATA floods). Parsing stays h2's. Resets are counted by the connection, which knows
whether the stream reset was still in its exchange (`RateLimit`).
"""

from __future__ import annotations

from .http2_limits import Http2Limits
from .http2_messages import PREFACE

__all__ = ["FrameGuard", "Http2Abuse", "RateLimit"]

_DATA, _HEADERS, _PRIORITY, _SETTINGS = 0x0, 0x1, 0x2, 0x4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_CONTROL = frozenset({_PRIORITY, _SETTINGS, _PING, _WINDOW_UPDATE})
_HEADER_SIZE = 9


class Http2Abuse(Exception):
    """A peer went past one of `Http2Limits`: the connection ends with ENHANCE_YOUR_CALM."""

    def __init__(self, limit: str, why: str) -> None:
        super().__init__(why)
        self.limit = limit
        """The name of the `Http2Limits` field it went past."""


class RateLimit:
    """At most `limit` events per `window` seconds, counted in fixed windows; `count`
    raises `Http2Abuse` naming the `Http2Limits` field `name` past it."""

    __slots__ = ("_count", "_started", "limit", "name", "what", "window")

    def __init__(self, name: str, limit: int, window: float, what: str) -> None:
        self.name, self.limit, self.window, self.what = name, limit, window, what
        self._count = 0
        self._started = float("-inf")

    def count(self, now: float) -> None:
        if now - self._started >= self.window:
            self._started, self._count = now, 0
        self._count += 1
        if self._count > self.limit:
            raise Http2Abuse(self.name, f"more than {self.limit} {self.what} in {self.window}s")


class FrameGuard:
    """Counts what a peer sends, frame by frame; `feed` raises `Http2Abuse` past a limit."""

    __slots__ = (
        "_block_bytes",
        "_block_frames",
        "_control",
        "_header",
        "_in_goaway",
        "_limits",
        "_skip",
    )

    def __init__(self, limits: Http2Limits, *, server: bool) -> None:
        self._limits = limits
        self._skip = len(PREFACE) if server else 0  # payload bytes (or preface) still to pass
        self._header = b""  # the part of a frame header read so far
        self._in_goaway = False  # the payload being passed is a GOAWAY's
        self._block_frames = 0  # frames of the header block in progress (0: none)
        self._block_bytes = 0
        self._control = RateLimit(
            "max_control_frames_per_window",
            limits.max_control_frames_per_window,
            limits.rate_window,
            "control frames",
        )

    def feed(self, data: bytes | bytearray, now: float) -> list[int]:
        """Count the frames in `data`, the next bytes from the peer. Returns where in
        `data` each GOAWAY frame ends (see `Http2Connection`, which feeds h2 up to there)."""
        view = memoryview(data)
        goaway_ends = []
        while view:
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                if not self._skip and self._in_goaway:
                    self._in_goaway = False
                    goaway_ends.append(len(data) - len(view))
                continue
            need = _HEADER_SIZE - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) == _HEADER_SIZE:
                header, self._header = self._header, b""
                length = int.from_bytes(header[:3], "big")
                self._skip = length
                self._count(header[3], header[4], length, now)
                if header[3] == _GOAWAY:
                    if length:
                        self._in_goaway = True
                    else:
                        goaway_ends.append(len(data) - len(view))
        return goaway_ends

    def _count(self, kind: int, flags: int, length: int, now: float) -> None:
        limits = self._limits
        if kind in (_HEADERS, _PUSH_PROMISE, _CONTINUATION):
            # A header block is HEADERS (or PUSH_PROMISE) then CONTINUATIONs, up to
            # END_HEADERS; h2 holds them all until the end, so their number and size are
            # bounded here.
            self._block_frames += 1
            self._block_bytes += length
            if self._block_frames > limits.max_header_frames:
                raise Http2Abuse(
                    "max_header_frames", f"a header block of more than {limits.max_header_frames} frames"
                )
            if self._block_bytes > limits.max_header_list_size:
                raise Http2Abuse(
                    "max_header_list_size",
                    f"a header block of more than {limits.max_header_list_size} bytes",
                )
            if flags & _END_HEADERS:
                self._block_frames = self._block_bytes = 0
        elif kind in _CONTROL or (kind == _DATA and length == 0 and not flags & _END_STREAM):
            self._control.count(now)
