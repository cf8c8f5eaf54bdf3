"""permessage-deflate (RFC 7692): negotiation, and bounded per-message (de)compression.

Sans-I/O, no trio. The server side picks the first acceptable offer and declines invalid
ones; the client side builds an offer and checks the server's answer. `PerMessageDeflate`
then compresses outgoing messages and inflates incoming ones without ever producing more
than the caller's byte budget, so a tiny frame cannot inflate into gigabytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import CloseCode, PayloadTooBig, ProtocolError
from ..frames import as_bytes

__all__ = [
    "DeflateConfig",
    "config_for",
    "DeflateParameters",
    "NegotiationError",
    "PerMessageDeflate",
    "parse_extensions",
    "server_accept",
    "client_offer",
    "client_accept",
]

NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_PARAMETERS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)
# zlib cannot compress with a 256-byte window (it silently uses 512), so 8 is never agreed
# for a side that we compress; inflating accepts any size from 8 to 15.
_MIN_COMPRESS_BITS = 9
# Messages this long or longer are deflated only if a sample from their middle shrinks.
_TRIAL_FROM = 8 * 1024
_TRIAL_SAMPLE = 2 * 1024
_TRIAL_MAX_RATIO = 0.9
_STORED_BLOCK_MAX = 0xFFFF
_STORED_HEADER = struct.Struct("<BHH")

Params = list[tuple[str, str | None]]


class NegotiationError(ValueError):
    """An extension offer or response that breaks RFC 7692 section 7."""


@dataclass(frozen=True)
class DeflateConfig:
    """What this side wants. The defaults keep a busy server's memory low.

    Window bits 12 and memLevel 5 make a compressor cost about 32 KiB and a decompressor
    about 11 KiB per connection, instead of about 256 KiB and 43 KiB at zlib's maxima,
    for a compression ratio close to the maxima on typical JSON and text.
    """

    server_max_window_bits: int = 12
    client_max_window_bits: int = 12
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    level: int = 6
    mem_level: int = 5

    def __post_init__(self) -> None:
        """Refuse values zlib cannot use, here rather than on the first message. Window
        bits run from 9 to 15: RFC 7692 allows 8, but zlib cannot compress with an 8-bit
        window, and promising one while compressing with 9 would break the peer."""
        for name, low, high in (
            ("server_max_window_bits", 9, 15),
            ("client_max_window_bits", 9, 15),
            ("level", -1, 9),
            ("mem_level", 1, 9),
        ):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"DeflateConfig.{name} must be an int from {low} to {high}, not {value!r}")
        for name in ("server_no_context_takeover", "client_no_context_takeover"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"DeflateConfig.{name} must be a bool, not {getattr(self, name)!r}")


@dataclass(frozen=True)
class DeflateParameters:
    """The agreed parameters, as they appear in the response header."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header(self) -> str:
        """The Sec-WebSocket-Extensions value that states these parameters."""
        parts = [NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


def config_for(compression: str | DeflateConfig | None) -> DeflateConfig | None:
    """The configuration for the `compression` option of `serve` and `connect`."""
    if compression is None or isinstance(compression, DeflateConfig):
        return compression
    if compression == "deflate":
        return DeflateConfig()
    raise ValueError(f'compression must be "deflate", a DeflateConfig or None, not {compression!r}')


# ---- header syntax (RFC 6455 section 9.1) -------------------------------------------------


def parse_extensions(values: Sequence[str]) -> list[tuple[str, Params]]:
    """Parse Sec-WebSocket-Extensions values into (name, [(param, value or None)]).

    Quoted-string values are unquoted. Raises `NegotiationError` on bad syntax.
    """
    extensions: list[tuple[str, Params]] = []
    for value in values:
        for item in _split_outside_quotes(value, ","):
            if not item.strip():
                continue
            name, *raw_params = _split_outside_quotes(item, ";")
            name = name.strip()
            if not _is_token(name):
                raise NegotiationError(f"invalid extension name {name!r}")
            params: Params = []
            for raw in raw_params:
                key, eq, val = raw.partition("=")
                key = key.strip()
                if not _is_token(key):
                    raise NegotiationError(f"invalid extension parameter {raw.strip()!r}")
                if not eq:
                    params.append((key, None))
                    continue
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = val[1:-1].replace("\\", "")
                if not _is_token(val):
                    raise NegotiationError(f"invalid value for extension parameter {key!r}")
                params.append((key, val))
            extensions.append((name, params))
    return extensions


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def _read_params(params: Params) -> dict[str, str | None]:
    """Check the parameter names, duplicates and values; return them as a dict."""
    seen: dict[str, str | None] = {}
    for key, value in params:
        if key not in _PARAMETERS:
            raise NegotiationError(f"unknown permessage-deflate parameter {key}")
        if key in seen:
            raise NegotiationError(f"duplicate permessage-deflate parameter {key}")
        if key.endswith("no_context_takeover") and value is not None:
            raise NegotiationError(f"{key} takes no value")
        if key == "server_max_window_bits" and value is None:
            raise NegotiationError("server_max_window_bits needs a value")
        if key.endswith("max_window_bits") and value is not None and not _is_window_bits(value):
            raise NegotiationError(f"{key} must be 8 to 15, not {value}")
        seen[key] = value
    return seen


def _is_window_bits(value: str) -> bool:
    return value.isdigit() and value[0] != "0" and 8 <= int(value) <= 15


# ---- server side --------------------------------------------------------------------------


def server_accept(offers: list[tuple[str, Params]], config: DeflateConfig) -> DeflateParameters | None:
    """The parameters for the first acceptable permessage-deflate offer, or None.

    Invalid offers are declined (skipped), as RFC 7692 section 5 allows, and so is one
    that asks for a server window of 8 bits, which zlib cannot produce.
    """
    for name, params in offers:
        if name != NAME:
            continue
        try:
            offered = _read_params(params)
        except NegotiationError:
            continue
        server_bits = config.server_max_window_bits
        if "server_max_window_bits" in offered:
            server_bits = min(server_bits, int(offered["server_max_window_bits"] or 15))
            if server_bits < _MIN_COMPRESS_BITS:
                continue
        client_bits = None
        if "client_max_window_bits" in offered:
            limit = int(offered["client_max_window_bits"] or 15)
            client_bits = min(config.client_max_window_bits, limit)
        return DeflateParameters(
            server_no_context_takeover=config.server_no_context_takeover
            or "server_no_context_takeover" in offered,
            client_no_context_takeover=config.client_no_context_takeover
            or "client_no_context_takeover" in offered,
            server_max_window_bits=server_bits if server_bits < 15 else None,
            client_max_window_bits=client_bits if client_bits is not None and client_bits < 15 else None,
        )
    return None


# ---- client side --------------------------------------------------------------------------


def client_offer(config: DeflateConfig) -> str:
    """The Sec-WebSocket-Extensions value the client sends."""
    parts = [NAME]
    if config.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if config.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if config.server_max_window_bits < 15:
        parts.append(f"server_max_window_bits={config.server_max_window_bits}")
    parts.append(
        f"client_max_window_bits={config.client_max_window_bits}"
        if config.client_max_window_bits < 15
        else "client_max_window_bits"
    )
    return "; ".join(parts)


def client_accept(response: list[tuple[str, Params]], config: DeflateConfig) -> DeflateParameters:
    """Check the server's answer to `client_offer(config)`; `NegotiationError` if wrong."""
    if len(response) != 1 or response[0][0] != NAME:
        names = ", ".join(name for name, _ in response)
        raise NegotiationError(f"the server chose extensions that were not offered: {names}")
    answer = _read_params(response[0][1])
    if config.server_no_context_takeover and "server_no_context_takeover" not in answer:
        raise NegotiationError("the server did not agree to server_no_context_takeover")
    server_bits = answer.get("server_max_window_bits")
    if config.server_max_window_bits < 15:
        if server_bits is None:
            raise NegotiationError("the server did not agree to server_max_window_bits")
        if int(server_bits) > config.server_max_window_bits:
            raise NegotiationError(f"server_max_window_bits={server_bits} is more than was offered")
    client_bits = answer.get("client_max_window_bits")
    if "client_max_window_bits" in answer:
        if client_bits is None:
            raise NegotiationError("client_max_window_bits in a response needs a value")
        if int(client_bits) > config.client_max_window_bits:
            raise NegotiationError(f"client_max_window_bits={client_bits} is more than was offered")
        if int(client_bits) < _MIN_COMPRESS_BITS:
            raise NegotiationError("client_max_window_bits=8 is not supported (zlib's minimum is 9)")
    return DeflateParameters(
        server_no_context_takeover="server_no_context_takeover" in answer,
        client_no_context_takeover=config.client_no_context_takeover
        or "client_no_context_takeover" in answer,
        server_max_window_bits=None if server_bits is None else int(server_bits),
        client_max_window_bits=None if client_bits is None else int(client_bits),
    )


# ---- the codec ----------------------------------------------------------------------------


def _worth_deflating(message: bytes | bytearray | memoryview) -> bool:
    """Whether deflating this message is likely to pay: short ones always; long ones only
    if 2 KiB from their middle shrink by a tenth at level 1 (about 50 µs to find out)."""
    if len(message) < _TRIAL_FROM:
        return True
    start = (len(message) - _TRIAL_SAMPLE) // 2
    sample = memoryview(message)[start : start + _TRIAL_SAMPLE]
    trial = zlib.compressobj(1, zlib.DEFLATED, -12, 5)
    size = len(trial.compress(sample)) + len(trial.flush())
    return size <= _TRIAL_MAX_RATIO * _TRIAL_SAMPLE


class PerMessageDeflate:
    """Compress and decompress messages under agreed parameters, for one side."""

    def __init__(self, params: DeflateParameters, *, is_server: bool, config: DeflateConfig) -> None:
        self.params = params
        if is_server:
            local_bits, remote_bits = params.server_max_window_bits, params.client_max_window_bits
            local_nct, remote_nct = params.server_no_context_takeover, params.client_no_context_takeover
        else:
            local_bits, remote_bits = params.client_max_window_bits, params.server_max_window_bits
            local_nct, remote_nct = params.client_no_context_takeover, params.server_no_context_takeover
        # Any window up to the agreed one is valid, so we compress with our configured one
        # where it is smaller; the peer may use all it agreed to (15 bits by default).
        config_bits = config.server_max_window_bits if is_server else config.client_max_window_bits
        self._compress_bits = max(_MIN_COMPRESS_BITS, min(local_bits or 15, config_bits))
        self._decompress_bits = remote_bits or 15
        self._local_no_context_takeover = local_nct
        self._remote_no_context_takeover = remote_nct
        self._level = config.level
        self._mem_level = config.mem_level
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    @property
    def shared_frame_key(self) -> tuple[int, int, int] | None:
        """Codecs with equal keys compress a message to the same bytes (None: they do not).

        Without context takeover each message starts from a fresh compressor, so the
        output depends only on the settings: `broadcast` compresses once per key.
        """
        if not self._local_no_context_takeover:
            return None
        return (self._compress_bits, self._level, self._mem_level)

    def compress_message(self, message: bytes | bytearray | memoryview) -> bytes:
        """Compress a whole message, or store it in deflate's uncompressed blocks if that
        is not worth the time.

        Already-compressed payloads (images, archives, encrypted data) shrink by a few
        percent at best while zlib spends 20-50 ns on each of their bytes. So a message of
        8 KiB or more is deflated only if 2 KiB from its middle shrink by a tenth at level
        1; otherwise it goes in stored blocks, copied rather than compressed. (Leaving RSV1
        unset would be as valid under RFC 7692, but some peers mishandle it.)
        """
        message = as_bytes(message)
        if not _worth_deflating(message):
            return self._store(message)
        return self.compress(message, True)

    def _store(self, message: bytes | bytearray | memoryview) -> bytes:
        out = bytearray()
        view = memoryview(message)
        for start in range(0, len(view), _STORED_BLOCK_MAX):
            block = view[start : start + _STORED_BLOCK_MAX]
            # Header byte 0: not final, type "stored", padding (the stream is byte-aligned
            # after every message's sync flush); then LEN and its one's complement.
            out += _STORED_HEADER.pack(0, len(block), len(block) ^ 0xFFFF)
            out += block
        # An empty stored block ends the message; RFC 7692 strips its last 4 bytes.
        out.append(0)
        if self._local_no_context_takeover:
            self._compressor = None
        else:
            # The peer's window now ends with this message: restart our compressor from
            # the same bytes, so that later back-references mean the same on both sides.
            window = bytes(view[-(1 << self._compress_bits) :])
            self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._compress_bits, self._mem_level, zdict=window
            )
        return bytes(out)

    def compress(self, data: bytes | bytearray | memoryview, fin: bool) -> bytes:
        """Compress one frame's worth of a message; `fin` ends the message."""
        if self._compressor is None:
            self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._compress_bits, self._mem_level
            )
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self._local_no_context_takeover:
                self._compressor = None
        return out

    def decompress(self, data: bytes, fin: bool, limit: int | None) -> bytes:
        """Inflate one frame of a compressed message, producing at most `limit` bytes.

        Raises `PayloadTooBig` past the limit (without inflating further) and
        `ProtocolError` (1007) for data that is not valid deflate.
        """
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self._decompress_bits)
        decompressor = self._decompressor
        if fin:
            data += _TAIL
        try:
            if limit is None:
                out = decompressor.decompress(data)
            else:
                out = decompressor.decompress(data, limit + 1)
                if len(out) > limit or decompressor.unconsumed_tail:
                    raise PayloadTooBig(f"message inflates past the size limit of {limit} bytes")
        except zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}", CloseCode.INVALID_DATA) from exc
        if decompressor.eof:
            # The peer ended its deflate stream with a final block (RFC 7692 section
            # 7.2.3.5 allows it). The inflater then ignores all further input, so the next
            # message needs a fresh one; nothing but our own tail may follow the block.
            if decompressor.unused_data not in (b"", _TAIL):
                raise ProtocolError("data after the end of a deflate stream", CloseCode.INVALID_DATA)
            self._decompressor = None
        elif fin and self._remote_no_context_takeover:
            self._decompressor = None
        return out
