"""A hand-driven HTTP/2 client for tests: h2 frames what it sends when it plays by the rules,
hyperframe (or bytes) when it must not, and every event it gets is kept by stream."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from hyperframe.frame import Frame as H2Frame
from hyperframe.frame import GoAwayFrame

from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame


class RawH2:
    """One HTTP/2 connection to a server under test."""

    def __init__(self, stream: trio.abc.Stream, *, acknowledge: bool = True) -> None:
        self.stream = stream
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.acknowledge = acknowledge
        """Give the server's DATA back to its windows as it comes (False: hold it, to close them)."""
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.data: dict[int, bytearray] = {}
        self.data_frames: dict[int, int] = {}  # DATA frames received, by stream
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False  # the server closed TCP
        self.settings: h2.events.RemoteSettingsChanged | None = None
        self.goaway_codes: list[int] = []
        self.goaway_last_ids: list[int] = []
        """The error code of every GOAWAY, read from the raw frames (also once our h2
        objects to what the server sends, after we sent frames behind its back)."""
        self._raw = bytearray()
        self._h2_failed = False

    @classmethod
    async def connect(
        cls, port: int, *, tls: ssl.SSLContext | None = None, acknowledge: bool = True, **settings: int
    ) -> RawH2:
        """Connect (TLS with ALPN h2 if `tls`), send the preface and `settings`, and wait
        for the server's SETTINGS."""
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            ssl_stream = trio.SSLStream(stream, tls, server_hostname="127.0.0.1")
            await ssl_stream.do_handshake()
            assert ssl_stream.selected_alpn_protocol() == "h2"
            stream = ssl_stream
        peer = cls(stream, acknowledge=acknowledge)
        peer.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={getattr(h2.settings.SettingCodes, k.upper()): v for k, v in settings.items()},
        )
        peer.h2.initiate_connection()
        await peer.flush()
        await peer.pump(lambda: peer.settings is not None)
        return peer

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are, past h2 (after what h2 has queued)."""
        await self.flush()
        await self.stream.send_all(data)

    async def pump(self, until: Callable[[], bool], seconds: float = 5) -> None:
        """Read and handle the server's frames until `until()`, failing after `seconds` or
        if the server closes first."""
        with trio.fail_after(seconds):
            while not until():
                if self.closed:
                    raise AssertionError("the server closed the connection first")
                await self.read_once()

    async def read_once(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed = True
            return
        self._scan(data)
        if self._h2_failed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._h2_failed = True  # we broke the rules on purpose; the raw scan goes on
            return
        for event in events:
            self._on(event)
        await self.flush()

    def _scan(self, data: bytes) -> None:
        """Frame boundaries of the raw bytes (the server's preface is a SETTINGS frame, so
        they start at one), for the GOAWAYs."""
        self._raw += data
        while len(self._raw) >= 9:
            frame, length = H2Frame.parse_frame_header(memoryview(self._raw[:9]))
            if len(self._raw) < 9 + length:
                break
            if isinstance(frame, GoAwayFrame):
                frame.parse_body(memoryview(self._raw[9 : 9 + length]))
                self.goaway_codes.append(frame.error_code)
                self.goaway_last_ids.append(frame.last_stream_id)
            del self._raw[: 9 + length]

    def _on(self, event: Any) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self.headers[event.stream_id] = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
            self.data_frames[event.stream_id] = self.data_frames.get(event.stream_id, 0) + 1
            if self.acknowledge:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.resets[event.stream_id] = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            if not event.error_code:  # a drain: the open streams carry on (h2 would close them all)
                self.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings = event

    # ---- WebSockets on streams ---------------------------------------------------------

    async def open_websocket(self, path: str = "/", extra: list[tuple[bytes, bytes]] | None = None) -> int:
        """An Extended CONNECT for a WebSocket at `path`; its stream id, once answered."""
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", path.encode()),
            (b":authority", b"127.0.0.1"),
            (b"sec-websocket-version", b"13"),
            *(extra or []),
        ]
        self.h2.send_headers(sid, headers)
        await self.flush()
        await self.pump(lambda: sid in self.headers or sid in self.resets)
        return sid

    def status(self, sid: int) -> int:
        return int(self.headers[sid][b":status"])

    async def send_message(self, sid: int, payload: str | bytes) -> None:
        opcode = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
        raw = payload.encode() if isinstance(payload, str) else payload
        await self.send_frame(sid, Frame(opcode, raw))

    async def send_frame(self, sid: int, frame: Frame) -> None:
        self.h2.send_data(sid, serialize_frame(frame, mask=True))
        await self.flush()

    def frames(self, sid: int) -> list[Frame]:
        parser = FrameParser(require_mask=False)
        parser.feed(self.data.get(sid, b""))
        found = []
        while (frame := parser.next_frame()) is not None:
            found.append(frame)
        return found

    def messages(self, sid: int) -> list[bytes]:
        return [f.payload for f in self.frames(sid) if f.opcode in (Opcode.TEXT, Opcode.BINARY)]

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
