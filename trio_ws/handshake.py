"""The opening handshake (RFC 6455 section 4) over h11, for both roles. Sans-I/O, no trio."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import h11

from .exceptions import InvalidHandshake
from .extensions.permessage_deflate import (
    DeflateConfig,
    NegotiationError,
    PerMessageDeflate,
    client_accept,
    client_offer,
    parse_extensions,
    server_accept,
)
from .http import Headers, HeadersLike, Request, Response
from .uri import WebSocketURI

__all__ = [
    "MAX_HANDSHAKE_SIZE",
    "RejectHandshake",
    "ServerHandshake",
    "ClientHandshake",
    "accept_key",
]

MAX_HANDSHAKE_SIZE = 16 * 1024
"""Cap on the bytes of a request or response head; past it the peer gets 431 or an error."""
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SelectSubprotocol = Callable[[Sequence[str]], "str | None"]


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value that answers a Sec-WebSocket-Key."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(values: list[str]) -> list[str]:
    """The comma-separated tokens of every value of a field, stripped and non-empty."""
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def _has_token(values: list[str] | None, token: str) -> bool:
    """Whether the comma-separated values of a field name `token` (lower-case), in any case."""
    if values is None:
        return False
    if len(values) == 1 and values[0].lower() == token:  # the usual field: the token alone
        return True
    return token in [t.lower() for t in _tokens(values)]


def _to_headers(raw: Any) -> Headers:
    """h11's header list (bytes pairs, original spelling, checked by h11) as our `Headers`."""
    return Headers.from_wire([(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw.raw_items()])


# A field as RFC 9110 section 5 allows it (h11's rules): a token for the name; a value of
# visible characters and inner spaces or tabs.
_FIELD = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+: (?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?", re.ASCII)


def _head(status: int, reason: str, headers: Headers) -> bytes:
    """An HTTP/1.1 response head, written without h11 (which checks what it sends just as
    `_FIELD` does): a 101 ends h11's part, and a malformed request never reached it."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in headers.raw_items():
        line = f"{name}: {value}"
        if _FIELD.fullmatch(line) is None:
            raise ValueError(f"invalid header field in the response: {name!r}: {value!r}")
        lines.append(line)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _to_h11(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers.raw_items()]


def _check_version(fields: dict[str, list[str]]) -> None:
    versions = fields.get("sec-websocket-version", [])
    if versions != ["13"]:
        raise _reject(
            426,
            f"unsupported Sec-WebSocket-Version {', '.join(versions) or '(missing)'}; "
            "this server speaks version 13",
            {"Sec-WebSocket-Version": "13"},
        )


class RejectHandshake(Exception):
    """The server answers the request with `response` instead of upgrading."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status, response.body)
        self.response = response


def _reject(status: int, why: str, headers: HeadersLike = ()) -> RejectHandshake:
    return RejectHandshake(Response(status, headers, f"Failed to open a WebSocket connection: {why}.\n"))


class ServerHandshake:
    """Reads one HTTP request and writes the answer: a 101 upgrade or a plain response."""

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        origins: Sequence[str | None] | None = None,
        server_header: str | None = None,
        extra_headers: HeadersLike | None = None,
        compression: DeflateConfig | None = None,
        max_size: int = MAX_HANDSHAKE_SIZE,
    ) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
        self._compression = compression
        self.deflate: PerMessageDeflate | None = None
        """The permessage-deflate codec agreed by the last `accept`, if any."""
        self._max_size = max_size
        self._subprotocols = list(subprotocols or ())
        self._select_subprotocol = select_subprotocol
        self._origins = None if origins is None else list(origins)
        self._server_header = server_header
        self._extra_headers = Headers(extra_headers or ())
        self._head_only = False  # a HEAD request: its answer has headers and no body
        self._received = 0  # bytes fed so far

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the client; b"" means it closed its side."""
        self._received += len(data)
        self._h11.receive_data(bytes(data))

    def next_request(self, remote_address: Any = None) -> Request | None:
        """The request once its head is complete, else None; EOFError if the client left.

        Raises `RejectHandshake` with a 400 (or 431 for an oversized head) for bytes
        that are not HTTP/1.1.
        """
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            why = "request head too large" if status == 431 else f"invalid HTTP request ({exc})"
            raise _reject(status, why) from exc
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Request):
            self._head_only = event.method == b"HEAD"
            fields = event.headers.raw_items()
            # h11 caps only an incomplete head; one that arrived whole is measured here
            # (when what came could hold a head too large).
            if self._received > self._max_size:
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in fields)
                if size > self._max_size:
                    raise _reject(431, "request head too large")
            if not event.target.startswith(b"/"):
                # Only origin-form ("/path?query") names a resource of this server; an
                # absolute URI or "*" would read differently to a router and to a guard.
                raise _reject(400, "the request target must be a path starting with /")
            return Request(
                path=event.target.decode("latin-1"),
                headers=Headers.from_wire([(n.decode("latin-1"), v.decode("latin-1")) for n, v in fields]),
                remote_address=remote_address,
                method=event.method.decode("latin-1"),
                http_version=event.http_version.decode("latin-1"),
            )
        raise EOFError("connection closed before a complete HTTP request")

    def accept(self, request: Request) -> Response:
        """The 101 response for a valid upgrade request; `RejectHandshake` otherwise.

        An HTTP/2 request (RFC 8441) is an Extended CONNECT with `:protocol` websocket; it
        is answered with the same 101, which HTTP/2 sends as `:status 200`.
        """
        fields = request.headers.by_name()
        if request.http_version == "2":
            if request.method != "CONNECT" or (request.protocol or "").lower() != "websocket":
                raise _reject(
                    400,
                    "this is a WebSocket endpoint and the request is not a WebSocket "
                    "(expected an Extended CONNECT with :protocol websocket, RFC 8441)",
                )
            _check_version(fields)
            response_headers = Headers()
        else:
            key = self._check_upgrade(request, fields)
            response_headers = Headers.from_wire(
                [
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", accept_key(key)),
                ]
            )
        if self._origins is not None:
            origins = fields.get("origin")
            origin = None if origins is None else ", ".join(origins)
            if origin not in self._origins:
                raise _reject(403, f"origin {origin or '(none)'} is not allowed")
        offered = fields.get("sec-websocket-protocol")
        if offered is not None or self._select_subprotocol is not None:
            subprotocol = self._negotiate_subprotocol(_tokens(offered or []))
            if subprotocol is not None:
                response_headers["Sec-WebSocket-Protocol"] = subprotocol
        if self._compression is not None:
            try:
                offers = parse_extensions(fields.get("sec-websocket-extensions", []))
            except NegotiationError:
                offers = []  # a malformed offer is declined, like any other
            params = server_accept(offers, self._compression)
            if params is not None:
                response_headers["Sec-WebSocket-Extensions"] = params.header()
                self.deflate = PerMessageDeflate(params, is_server=True, config=self._compression)
        if self._server_header is not None:
            response_headers["Server"] = self._server_header
        if self._extra_headers:
            response_headers.update_from(self._extra_headers)
        return Response(101, response_headers)

    def _check_upgrade(self, request: Request, fields: dict[str, list[str]]) -> str:
        """What RFC 6455 section 4.2.1 asks of an HTTP/1.1 upgrade; its key, else `RejectHandshake`."""
        if not _has_token(fields.get("upgrade"), "websocket"):
            raise _reject(  # 426 names the protocol to upgrade to (RFC 9110, 15.5.22)
                426,
                "this is a WebSocket endpoint and the request is not an upgrade "
                "(expected the header Upgrade: websocket)",
                {"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        if not _has_token(fields.get("connection"), "upgrade"):
            raise _reject(400, "expected the header Connection: Upgrade")
        if request.method != "GET":
            raise _reject(400, f"the upgrade must be a GET request, not {request.method}")
        if request.http_version != "1.1":
            raise _reject(505, f"the upgrade needs HTTP/1.1, not HTTP/{request.http_version}")
        lengths = fields.get("content-length")
        if "transfer-encoding" in fields or (lengths is not None and ", ".join(lengths).strip() != "0"):
            # Whatever followed the head would be read as WebSocket frames.
            raise _reject(400, "an upgrade request must not have a body")
        _check_version(fields)
        keys = fields.get("sec-websocket-key", [])
        if len(keys) != 1 or not _is_valid_key(keys[0]):
            raise _reject(400, "missing or invalid Sec-WebSocket-Key header")
        return keys[0]

    def _negotiate_subprotocol(self, offered: list[str]) -> str | None:
        if self._select_subprotocol is not None:
            return self._select_subprotocol(offered)
        if not offered or not self._subprotocols:
            return None
        for subprotocol in self._subprotocols:
            if subprotocol in offered:
                return subprotocol
        raise _reject(
            400,
            f"no supported subprotocol among {', '.join(offered)}; "
            f"this server supports {', '.join(self._subprotocols)}",
        )

    def send_response(self, response: Response) -> bytes:
        """Serialize `response`; any status but 101 carries its body and closes."""
        if response.status == 101:  # sent as it is: no header is added to a 101
            return _head(101, response.reason, response.headers)
        headers = response.headers.copy()
        if self._server_header is not None and "Server" not in headers:
            headers["Server"] = self._server_header
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(response.body))
        if response.body and "Content-Type" not in headers:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        if "Connection" not in headers:
            headers["Connection"] = "close"
        if self._h11.their_state is not h11.SEND_BODY and self._h11.their_state is not h11.DONE:
            # The request head never completed (e.g. it was malformed): answer without h11.
            return _head(response.status, response.reason, headers) + (
                b"" if self._head_only else response.body
            )
        out = (
            self._h11.send(
                h11.Response(
                    status_code=response.status, headers=_to_h11(headers), reason=response.reason.encode()
                )
            )
            or b""
        )
        if not self._head_only:  # h11 fixes a HEAD answer's body at 0 bytes
            out += self._h11.send(h11.Data(data=response.body)) or b""
        out += self._h11.send(h11.EndOfMessage()) or b""
        return out

    @property
    def trailing_data(self) -> bytes:
        """Bytes the client sent after its request head: the first WebSocket frames."""
        return bytes(self._h11.trailing_data[0])


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False


class ClientHandshake:
    """Writes the upgrade request and checks the server's answer."""

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        subprotocols: Sequence[str] | None = None,
        extra_headers: HeadersLike | None = None,
        origin: str | None = None,
        user_agent: str | None = None,
        compression: DeflateConfig | None = None,
        max_size: int = MAX_HANDSHAKE_SIZE,
    ) -> None:
        self._uri = uri
        self._compression = compression
        self.deflate: PerMessageDeflate | None = None
        """The permessage-deflate codec the server agreed to, if any."""
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_size)
        self._max_body = max_size
        self._subprotocols = list(subprotocols or ())
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        headers = Headers({"Host": uri.host_header})
        headers.update_from(
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": self.key,
                "Sec-WebSocket-Version": "13",
            }
        )
        if uri.user_info is not None:
            credentials = base64.b64encode(":".join(uri.user_info).encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        if origin is not None:
            headers["Origin"] = origin
        if self._subprotocols:
            headers["Sec-WebSocket-Protocol"] = ", ".join(self._subprotocols)
        if compression is not None:
            headers["Sec-WebSocket-Extensions"] = client_offer(compression)
        if user_agent is not None:
            headers["User-Agent"] = user_agent
        headers.update_from(extra_headers or ())
        self.request = Request(path=uri.resource, headers=headers)
        self.response: Response | None = None
        self._rejection: tuple[int, Headers] | None = None
        self._body = bytearray()
        self.subprotocol: str | None = None
        """The subprotocol the server chose, if any."""

    def request_bytes(self) -> bytes:
        """The serialized upgrade request."""
        request = h11.Request(
            method="GET", target=self.request.path.encode("latin-1"), headers=_to_h11(self.request.headers)
        )
        return self._h11.send(request) or b""

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the server; b"" means it closed the connection."""
        self._h11.receive_data(bytes(data))

    def next_response(self) -> Response | None:
        """The validated 101 response, or None until more bytes arrive.

        Raises `InvalidHandshake` for any other answer (with its status, headers and body)
        and for a 101 that does not complete the handshake correctly.
        """
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise InvalidHandshake(f"invalid HTTP response from the server: {exc}") from exc
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return self._validate(Response(101, _to_headers(event.headers)))
                continue  # 1xx interim responses such as 100 Continue
            if isinstance(event, h11.Response):
                self._rejection = (event.status_code, _to_headers(event.headers))
            elif isinstance(event, h11.Data) and self._rejection is not None:
                self._body += event.data[: self._max_body - len(self._body)]
            elif self._rejection is not None:  # EndOfMessage or ConnectionClosed
                status, headers = self._rejection
                explanation = bytes(self._body).decode("utf-8", "replace").strip().partition("\n")[0][:200]
                raise InvalidHandshake(
                    f"server rejected the WebSocket connection: HTTP {status}"
                    + (f": {explanation}" if explanation else ""),
                    status=status,
                    headers=headers,
                    body=bytes(self._body),
                )
            else:
                raise InvalidHandshake("connection closed during the opening handshake")

    def _validate(self, response: Response) -> Response:
        headers = response.headers

        def fail(why: str) -> InvalidHandshake:
            return InvalidHandshake(f"invalid opening handshake: {why}", status=101, headers=headers)

        if [t.lower() for t in _tokens(headers.get_all("Upgrade"))] != ["websocket"]:
            raise fail("missing Upgrade: websocket")
        if "upgrade" not in [t.lower() for t in _tokens(headers.get_all("Connection"))]:
            raise fail("missing Connection: Upgrade")
        if headers.get_all("Sec-WebSocket-Accept") != [accept_key(self.key)]:
            raise fail("wrong Sec-WebSocket-Accept")
        return self._negotiated(response, fail)

    def http2_response(self, response: Response) -> Response:
        """The server's answer to the same request sent over HTTP/2 as an Extended CONNECT
        (RFC 8441): a 2xx, validated as a 101 would be (less what HTTP/2 has no use for:
        Upgrade, Connection, Sec-WebSocket-Accept); `InvalidHandshake` for any other."""
        headers = response.headers
        if not 200 <= response.status < 300:
            explanation = response.body.decode("utf-8", "replace").strip().partition("\n")[0][:200]
            raise InvalidHandshake(
                f"server rejected the WebSocket connection: HTTP {response.status}"
                + (f": {explanation}" if explanation else ""),
                status=response.status,
                headers=headers,
                body=response.body,
            )

        def fail(why: str) -> InvalidHandshake:
            status = response.status
            return InvalidHandshake(f"invalid opening handshake: {why}", status=status, headers=headers)

        return self._negotiated(response, fail)

    def _negotiated(self, response: Response, fail: Callable[[str], InvalidHandshake]) -> Response:
        """The extensions and the subprotocol the server chose, checked against the offer."""
        headers = response.headers
        if _tokens(headers.get_all("Sec-WebSocket-Extensions")):
            if self._compression is None:
                raise fail("the server chose extensions that were not offered")
            try:
                extensions = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
                params = client_accept(extensions, self._compression)
            except NegotiationError as exc:
                raise fail(str(exc)) from exc
            self.deflate = PerMessageDeflate(params, is_server=False, config=self._compression)
        chosen = _tokens(headers.get_all("Sec-WebSocket-Protocol"))
        if chosen:
            if len(chosen) > 1 or chosen[0] not in self._subprotocols:
                raise fail(f"the server chose subprotocol {', '.join(chosen)}, which was not offered")
            self.subprotocol = chosen[0]
        self.response = response
        return response

    @property
    def trailing_data(self) -> bytes:
        """Bytes the server sent after the 101 head: the first WebSocket frames."""
        return bytes(self._h11.trailing_data[0])
