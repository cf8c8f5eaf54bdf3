"""The WebSocket protocol state machine (RFC 6455 sections 5-7). Sans-I/O, no trio.

Bytes go in through `receive_data`, events come out: a complete message (`str` for text,
`bytes` for binary), `Ping`, `Pong` or `Close`. Calls such as `send` and `send_close` append
frames to an output buffer that the I/O layer drains with `data_to_send`. Pings are answered
and close frames echoed here, so every I/O layer behaves the same.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .assembler import MessageAssembler
from .counters import CLIENT_CONNECTIONS, ConnectionStats
from .exceptions import CloseCode, ProtocolError
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import BytesLike, Frame, FrameParser, Opcode, as_bytes, parse_close, serialize_close, write_frame
from .messages import Data, Fragment

__all__ = ["PONG_BACKLOG", "Role", "State", "Ping", "Pong", "Close", "Fragment", "Event", "Protocol"]


class Role(enum.Enum):
    """Which end of the connection this is; it decides the masking direction."""

    SERVER = "server"
    CLIENT = "client"


class State(enum.IntEnum):
    """Connection state (RFC 6455 section 4 and 7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping frame arrived (already answered with a pong)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong frame arrived."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame, received or sent."""

    code: int
    reason: str = ""


Event = str | bytes | Fragment | Ping | Pong | Close

PONG_BACKLOG = 2**16
"""Each ping is answered while the output not yet taken holds fewer bytes than this; past it, pongs wait
in one pending slot that the latest ping overwrites."""


class Protocol:
    """One WebSocket connection's protocol state, for either role."""

    __slots__ = (
        "_mask",
        "_messages",
        "_out",
        "_out_opcode",
        "_parser",
        "_pong",
        "bytes_received",
        "bytes_sent",
        "close_rcvd",
        "close_sent",
        "deflate",
        "failure",
        "peer_closed_first",
        "role",
        "state",
        "stats",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_size: int | None = 2**20,
        deflate: PerMessageDeflate | None = None,
        stats: ConnectionStats = CLIENT_CONNECTIONS,
    ) -> None:
        self.role = role
        self.stats = stats
        """Where its messages are counted: a server's, shared by its connections."""
        self.state = State.OPEN
        self.deflate = deflate
        """The negotiated permessage-deflate codec, if any."""
        self._messages = MessageAssembler(max_size, deflate, stats)  # data frames in, messages out
        self._parser = FrameParser(require_mask=role is Role.SERVER, allowed_rsv=0x40 if deflate else 0)
        self._parser.max_payload = self._messages.frame_limit
        self._mask = role is Role.CLIENT
        self._out = bytearray()
        self.bytes_received = 0
        """Bytes fed in with `feed_data` (frames, as they came off the wire)."""
        self.bytes_sent = 0
        """Bytes taken out with `data_to_send` (frames, as handed to the wire)."""
        # The payload of the automatic pong not yet written to `_out`, if any.
        self._pong: bytes | None = None
        # Outgoing fragmented message: the opcode of its first frame, or None.
        self._out_opcode: Opcode | None = None
        self.close_rcvd: Close | None = None
        """The close frame received from the peer, if any."""
        self.close_sent: Close | None = None
        """The close frame sent to the peer, if any."""
        self.failure: Close | None = None
        """Why this side failed the connection (RFC 6455 section 7.1.7), if it did."""
        self.peer_closed_first = False
        """Whether the peer's close frame came before this side sent one."""

    # ---- receiving -------------------------------------------------------------------

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; take the events they complete with `next_event`.

        Nothing is parsed here, so the I/O layer decides how far parsing goes: it stops
        calling `next_event` while its inbox is full (backpressure), and the unparsed bytes
        wait in the frame parser.
        """
        if self.state is not State.CLOSED:
            self.bytes_received += len(data)
            self._parser.feed(data)

    def next_event(self, *, stream: bool = False) -> Event | None:
        """The next event from the bytes fed so far, or None until more arrive.

        `stream`: a fragmented message's frames are given one by one as `Fragment`s, each
        bounded by `max_size` on its own, instead of assembled into one message bounded by
        `max_size` (a message that began streaming goes on streaming to its end).

        A protocol violation fails the connection: a close frame with the right code is
        queued, the state becomes CLOSED, and later input is ignored.
        """
        parser = self._parser
        try:
            while self.state is not State.CLOSED:
                frame = parser.next_frame()
                if frame is None:
                    return None
                event = self._receive_frame(frame, stream)
                if event is not None:
                    return event
        except ProtocolError as exc:
            self.fail(exc.code, str(exc))
        return None

    def receive_data(self, data: bytes | bytearray | memoryview, *, stream: bool = False) -> list[Event]:
        """`feed_data`, then every event the bytes complete, in order (no backpressure)."""
        self.feed_data(data)
        events: list[Event] = []
        while (event := self.next_event(stream=stream)) is not None:
            events.append(event)
        return events

    def receive_eof(self) -> None:
        """The peer closed the TCP connection; without a close frame that is abnormal."""
        self.state = State.CLOSED
        self._discard_input()

    def abort(self) -> None:
        """This side gives up on the connection at once (a close that timed out, a
        cancellation, a lost write): no more input, and no closing handshake to wait for.
        Without a close frame received, `close_code` is then 1006."""
        self.receive_eof()

    @property
    def closes_tcp_first(self) -> bool:
        """Whether this side closes the TCP connection first once the protocol is done:
        the server does (RFC 6455 7.1.1), and so does a side that failed the connection;
        the other side waits for the peer to close it."""
        return self.role is Role.SERVER or self.failure is not None

    def _discard_input(self) -> None:
        self._parser.discard()
        self._messages.discard()

    @property
    def max_size(self) -> int | None:
        """The largest message accepted, in bytes, or None for no limit."""
        return self._messages.max_size

    @property
    def buffered(self) -> int:
        """Received bytes held here: unparsed input plus the message being assembled."""
        return self._parser.buffered + self._messages.assembling

    @property
    def assembling(self) -> int:
        """Payload bytes of the fragmented message being assembled (at most `max_size`)."""
        return self._messages.assembling

    def _receive_frame(self, frame: Frame, stream: bool) -> Event | None:
        opcode = frame.opcode
        if opcode < 0x8:  # TEXT, BINARY or CONTINUATION: part of a message
            messages = self._messages
            event = messages.add(frame, stream=stream)
            if not frame.fin or opcode is Opcode.CONTINUATION:
                # A fragmented message began, went on or ended: what the next frame may
                # carry changed (a whole message in one frame leaves it as it was).
                self._parser.max_payload = messages.frame_limit
            return event
        if frame.rsv1:
            raise ProtocolError("RSV1 set on a frame that does not start a message")
        if opcode is Opcode.PING:
            if self.state is State.OPEN:
                if len(self._out) < PONG_BACKLOG:
                    write_frame(self._out, Opcode.PONG, frame.payload, mask=self._mask)
                    self._pong = None  # this pong answers the pending one's ping too
                else:
                    # Backed up: only the latest ping gets a pong (RFC 6455 section 5.5.3),
                    # so a peer flooding pings and reading nothing costs one pending pong.
                    self._pong = frame.payload
            return Ping(frame.payload)
        if opcode is Opcode.PONG:
            return Pong(frame.payload)
        code, reason = parse_close(frame.payload)
        self.close_rcvd = Close(code, reason)
        if self.close_sent is None:
            self.peer_closed_first = True
            self._write_close(Close(code, reason))
        self.state = State.CLOSED
        self._discard_input()  # whatever follows a close frame is ignored
        return self.close_rcvd

    # ---- sending ---------------------------------------------------------------------

    def send(self, data: Data, *, fin: bool = True) -> None:
        """Queue a text (`str`) or binary (bytes-like) message, or one fragment of it.

        With `fin=False` the message goes on: later calls send continuation frames of the
        same type until one has `fin=True`.
        """
        self._check_open()
        if isinstance(data, str):
            opcode = Opcode.TEXT
            payload: BytesLike = data.encode("utf-8")
        else:
            opcode = Opcode.BINARY
            payload = as_bytes(data)
        if self._out_opcode is None:
            frame_opcode = opcode
        elif opcode is self._out_opcode:
            frame_opcode = Opcode.CONTINUATION
        else:
            raise TypeError("all fragments of a message must be str, or all bytes-like")
        self._out_opcode = None if fin else opcode
        stats = self.stats
        if opcode is Opcode.TEXT:
            stats.text_sent += fin
            stats.text_sent_bytes += len(payload)
        else:
            stats.binary_sent += fin
            stats.binary_sent_bytes += len(payload)
        if self.deflate is None:
            write_frame(self._out, frame_opcode, payload, fin=fin, mask=self._mask)
            return
        stats.deflate_in[1] += len(payload)
        if fin and frame_opcode is opcode:  # a whole message
            payload = self.deflate.compress_message(payload)
            stats.deflate_out[1] += len(payload)
            write_frame(self._out, frame_opcode, payload, rsv1=True, mask=self._mask)
        else:
            payload = self.deflate.compress(payload, fin)
            stats.deflate_out[1] += len(payload)
            rsv1 = frame_opcode is not Opcode.CONTINUATION
            write_frame(self._out, frame_opcode, payload, fin=fin, rsv1=rsv1, mask=self._mask)

    @property
    def can_send_frame(self) -> bool:
        """Whether a whole message may be queued now (open, not inside a fragmented one)."""
        return self.state is State.OPEN and self._out_opcode is None

    @property
    def framing_key(self) -> object | None:
        """Protocols with equal keys frame a whole message to the same bytes, so fan-out
        frames it once for them all; None when this one must frame its own (a client masks
        each frame with a fresh key; compression with context takeover has a history)."""
        if self._mask:
            return None
        if self.deflate is None:
            return "plain"
        key = self.deflate.shared_frame_key
        return None if key is None else ("deflate", key)

    def shared_frame(self, opcode: Opcode, payload: bytes) -> bytes:
        """A whole message as one frame, as every protocol with this `framing_key` sends it."""
        if self.framing_key is None:
            raise RuntimeError("this connection frames its own messages")
        out = bytearray()
        if self.deflate is None:
            write_frame(out, opcode, payload)
        else:
            compressed = self.deflate.compress_message(payload)
            self.stats.deflate_in[1] += len(payload)
            self.stats.deflate_out[1] += len(compressed)
            write_frame(out, opcode, compressed, rsv1=True)
        return bytes(out)

    def send_serialized(self, frame: bytes, opcode: Opcode, size: int) -> None:
        """Queue a message already serialized as one frame (a `shared_frame`), of `opcode`
        and `size` payload bytes (before compressing)."""
        if not self.can_send_frame:
            raise RuntimeError("cannot queue a whole message now")
        self._out += frame
        self.stats.sent(opcode, size)

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a ping frame."""
        self._check_open()
        self._check_control_payload(payload)
        write_frame(self._out, Opcode.PING, payload, mask=self._mask)

    def send_pong(self, payload: bytes = b"") -> None:
        """Queue an unsolicited pong frame (pings are answered automatically)."""
        self._check_open()
        self._check_control_payload(payload)
        write_frame(self._out, Opcode.PONG, payload, mask=self._mask)

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (or finish it, if the peer started it)."""
        if self.close_sent is not None or self.state is State.CLOSED:
            return
        self._write_close(Close(code, reason))
        self.state = State.CLOSING

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection: send a close frame if none was sent, then stop."""
        if self.state is State.CLOSED:
            return
        self.failure = Close(code, reason.encode()[:123].decode("utf-8", "ignore"))
        if self.close_sent is None:
            self._write_close(self.failure)
        self.state = State.CLOSED
        self._discard_input()

    def _write_pong(self) -> None:
        """Put the pending automatic pong in the output, after whatever is there."""
        if self._pong is not None:
            write_frame(self._out, Opcode.PONG, self._pong, mask=self._mask)
            self._pong = None

    def _write_close(self, close: Close) -> None:
        self._write_pong()  # nothing may follow a close frame
        payload = serialize_close(close.code, close.reason)
        write_frame(self._out, Opcode.CLOSE, payload, mask=self._mask)
        self.close_sent = close

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot send while the connection is {self.state.name}")

    @staticmethod
    def _check_control_payload(payload: bytes) -> None:
        if len(payload) > 125:
            raise ValueError("a control frame payload is at most 125 bytes")

    # ---- output and outcome ----------------------------------------------------------

    @property
    def bytes_to_send(self) -> int:
        """Size of the output not yet taken by `data_to_send`."""
        if self._pong is None:
            return len(self._out)
        return len(self._out) + len(self._pong) + (6 if self._mask else 2)

    def data_to_send(self) -> bytearray:
        """Take everything queued for the wire."""
        self._write_pong()
        out = self._out
        self._out = bytearray()
        self.bytes_sent += len(out)
        return out

    @property
    def close_code(self) -> int:
        """How the connection ended (meaningful once CLOSED).

        The code the peer sent; else the code we failed the connection with; else 1006,
        because the TCP connection ended without a closing handshake.
        """
        if self.close_rcvd is not None:
            return self.close_rcvd.code
        if self.failure is not None:
            return self.failure.code
        return CloseCode.ABNORMAL_CLOSURE

    @property
    def close_reason(self) -> str:
        """The reason that goes with `close_code`."""
        if self.close_rcvd is not None:
            return self.close_rcvd.reason
        if self.failure is not None:
            return self.failure.reason
        return ""
