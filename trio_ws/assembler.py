"""Data frames in, messages out (RFC 6455 section 5.4). Sans-I/O, no trio.

`MessageAssembler` owns the message in progress: its type, its payload so far, the UTF-8
check of a text message, and whether it is compressed. It bounds a message by `max_size`
through `frame_limit`, which the protocol gives the frame parser, so that a frame over it is
refused at its header, before its payload is buffered. `FragmentJoiner` joins a message
that was given as fragments back into one, bounded as a whole by `check_size`. Whether a
fragmented message is assembled or given frame by frame (streamed) is the caller's choice,
made on every frame (`add(stream=...)`).
"""

from __future__ import annotations

import codecs

from .counters import CLIENT_CONNECTIONS, ConnectionStats
from .exceptions import CloseCode, PayloadTooBig, ProtocolError
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import Frame, Opcode
from .messages import Fragment, Message

__all__ = ["FragmentJoiner", "MessageAssembler", "check_size", "decode_text"]

_new_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def check_size(size: int, max_size: int | None) -> None:
    """Raise `PayloadTooBig` (close code 1009) for a message of `size` bytes over `max_size`."""
    if max_size is not None and size > max_size:
        raise PayloadTooBig(f"message of {size} bytes over the size limit of {max_size} bytes")


def decode_text(payload: bytes) -> str:
    """A text message's payload as `str`; invalid UTF-8 is a protocol error (1007)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from exc


class MessageAssembler:
    """One connection's incoming data frames, turned into messages or `Fragment`s.

    A message in one frame is returned at once. The frames of a fragmented message are
    joined into one bytearray, so a flood of tiny or empty fragments costs their bytes and
    nothing per part. A text message is checked as UTF-8 frame by frame, so invalid text
    fails as soon as it arrives, not at the end of the message.
    """

    __slots__ = (
        "_buffer",
        "_compressed",
        "_decoder",
        "_deflate",
        "_opcode",
        "_stats",
        "_streamed",
        "max_size",
    )

    def __init__(
        self,
        max_size: int | None,
        deflate: PerMessageDeflate | None,
        stats: ConnectionStats = CLIENT_CONNECTIONS,
    ) -> None:
        self._stats = stats  # where each message received is counted
        self.max_size = max_size
        """The largest message, in bytes (after inflating), or None for no limit."""
        self._deflate = deflate
        self._opcode: Opcode | None = None  # TEXT or BINARY while a message is in progress
        self._buffer = bytearray()  # the payload assembled so far
        self._decoder: codecs.IncrementalDecoder | None = None  # a text message's UTF-8 check
        self._compressed = False  # RSV1 on its first frame: inflate it
        self._streamed = False  # part of it went out as a Fragment: the rest must too

    @property
    def in_message(self) -> bool:
        """Whether a fragmented message is in progress (a continuation frame is expected)."""
        return self._opcode is not None

    @property
    def assembling(self) -> int:
        """Payload bytes of the fragmented message being assembled (at most `max_size`)."""
        return len(self._buffer)

    @property
    def frame_limit(self) -> int | None:
        """The most payload the next data frame may carry: what is left of `max_size` for a
        message being assembled; `max_size` itself for a streamed message's next frame."""
        if self.max_size is None or self._streamed:
            return self.max_size
        return self.max_size - len(self._buffer)

    def discard(self) -> None:
        """Forget the message in progress (the connection closed)."""
        self._buffer = bytearray()

    def add(self, frame: Frame, *, stream: bool) -> Message | Fragment | None:
        """Take one data frame; return the message it ends (or, when `stream` is true or
        the message is already being streamed, the frame as a `Fragment`), else None."""
        opcode = frame.opcode
        if opcode is Opcode.CONTINUATION:
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a frame that does not start a message")
            if self._opcode is None:
                raise ProtocolError("continuation frame without a message to continue")
        elif self._opcode is not None:
            raise ProtocolError("new data frame while a fragmented message is in progress")
        elif frame.fin and not frame.rsv1:  # the common case: a whole message in one frame
            payload = frame.payload
            stats = self._stats
            if opcode is Opcode.TEXT:
                stats.text_received += 1
                stats.text_received_bytes += len(payload)
                return decode_text(payload)
            stats.binary_received += 1
            stats.binary_received_bytes += len(payload)
            return payload
        else:
            self._opcode = opcode
            self._compressed = frame.rsv1
            if opcode is Opcode.TEXT and not frame.rsv1:
                self._decoder = _new_utf8_decoder()
        if stream or self._streamed:
            return self._stream(frame)
        return self._assemble(frame)

    def _assemble(self, frame: Frame) -> Message | None:
        payload = frame.payload
        buffer = self._buffer
        buffer += payload  # within max_size: the parser refused a frame over `frame_limit`
        decoder = self._decoder
        if decoder is not None:
            try:  # fail as soon as invalid UTF-8 arrives, not at the end of the message
                decoder.decode(payload, frame.fin)
            except UnicodeDecodeError as exc:
                raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from exc
        if not frame.fin:
            return None
        data = bytes(buffer)
        message: Message
        stats = self._stats
        if self._compressed:
            # Inflated once per message: cheaper than per frame, and bounded the same.
            assert self._deflate is not None  # the parser only lets RSV1 through with it
            stats.deflate_in[0] += len(data)
            data = self._deflate.decompress(data, True, self.max_size)
            stats.deflate_out[0] += len(data)
            message = decode_text(data) if self._opcode is Opcode.TEXT else data
        elif decoder is not None:
            message = data.decode("utf-8")  # validated frame by frame above
        else:
            message = data
        assert self._opcode is not None
        stats.received(self._opcode, len(data))
        self._end()
        return message

    def _stream(self, frame: Frame) -> Fragment:
        """One frame of a streamed message as a `Fragment`: inflated and decoded on its own,
        bounded by `max_size` by itself. What was assembled before streaming began goes first."""
        payload: bytes = frame.payload
        if self._buffer:
            payload = bytes(self._buffer) + payload
            self._buffer = bytearray()
            self._decoder = None  # it validated the assembled bytes: start over with them
        stats = self._stats
        if self._compressed:
            assert self._deflate is not None
            stats.deflate_in[0] += len(payload)
            payload = self._deflate.decompress(payload, frame.fin, self.max_size)
            stats.deflate_out[0] += len(payload)
        assert self._opcode is not None
        stats.received(self._opcode, len(payload), messages=frame.fin)
        data: str | bytes = payload
        if self._opcode is Opcode.TEXT:
            if self._decoder is None:
                self._decoder = _new_utf8_decoder()
            try:
                data = self._decoder.decode(payload, frame.fin)
            except UnicodeDecodeError as exc:
                raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from exc
        self._streamed = True
        if frame.fin:
            self._end()
        return Fragment(data, frame.fin)

    def _end(self) -> None:
        self._opcode = None
        self._buffer = bytearray()
        self._decoder = None
        self._compressed = False
        self._streamed = False


class FragmentJoiner:
    """Joins the `Fragment`s of one streamed message back into the message, bounded by
    `max_size` as a whole (for a `recv()` that finds a message streamed to the queue)."""

    __slots__ = ("_parts", "_size", "max_size")

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self._parts: list[str | bytes] = []
        self._size = 0

    def add(self, fragment: Fragment) -> Message | None:
        """Take the next fragment; the whole message once `fragment` ends it, else None.
        Raises `PayloadTooBig` as soon as the parts so far are over `max_size`."""
        self._parts.append(fragment.data)
        self._size += len(fragment.data)
        check_size(self._size, self.max_size)
        if not fragment.fin:
            return None
        parts = self._parts
        return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]
