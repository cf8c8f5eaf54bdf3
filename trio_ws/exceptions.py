"""Exceptions raised by trio_ws, and the close codes of RFC 6455 section 7.4."""

from __future__ import annotations

import enum

from .http import Headers


class CloseCode(enum.IntEnum):
    """Close codes registered with IANA (RFC 6455 section 7.4.1 and the registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
"""Codes a close frame may carry on the wire; 1005, 1006 and 1015 are reserved for local use."""

OK_CLOSE_CODES = frozenset({1000, 1001, 1005})
"""Closing with one of these is a normal end of the connection, not an error. 1005 (a close frame with no
code) counts as normal: the peer closed on purpose."""


def is_valid_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame (registered codes or 3000-4999)."""
    return code in SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


class WebSocketError(Exception):
    """Base class of every exception trio_ws raises."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; `code` and `reason` say how it ended."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(code, reason)

    def __str__(self) -> str:
        try:
            name = f" ({CloseCode(self.code).name.lower().replace('_', ' ')})"
        except ValueError:
            name = ""
        reason = f": {self.reason}" if self.reason else ""
        return f"code = {self.code}{name}{reason}"

    @staticmethod
    def for_code(code: int, reason: str = "") -> ConnectionClosed:
        """The right subclass for a close code: OK for a normal end, Error otherwise."""
        if code in OK_CLOSE_CODES:
            return ConnectionClosedOK(code, reason)
        return ConnectionClosedError(code, reason)


class ConnectionClosedOK(ConnectionClosed):
    """The connection ended normally (1000, 1001, or a close frame without a code)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended abnormally; 1006 means the TCP connection was lost."""


class InvalidHandshake(WebSocketError):
    """The opening handshake failed; `status`, `headers`, `body` are the HTTP answer
    (`status` None and no headers when there was no answer)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers: Headers = Headers() if headers is None else headers
        self.body = body


class InvalidRedirect(InvalidHandshake):
    """A redirect the client will not follow: a loop, too many, wss:// to ws://, or no
    usable Location. `chain` lists the URIs requested, in order, the refused one last."""

    def __init__(
        self,
        message: str,
        chain: tuple[str, ...],
        *,
        status: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(f"{message}: {' -> '.join(chain)}", status=status, headers=headers)
        self.chain = chain


class ProxyError(InvalidHandshake):
    """A proxy refused or failed to open the tunnel; the message names the proxy (its
    password redacted), and `status` and `headers` are its HTTP answer when it gave one."""


class InvalidURI(WebSocketError, ValueError):
    """A URI that is not a valid ws:// or wss:// URI."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455; `code` is the close code to fail the connection with."""

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooBig(ProtocolError):
    """A message larger than `max_size` (close code 1009)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, CloseCode.MESSAGE_TOO_BIG)
