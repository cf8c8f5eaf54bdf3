"""HTTP/2 header fields to and from `Request` and `Response` (RFC 9113 section 8.3, RFC
8441 section 4). Sans-I/O: no trio, no h2."""

from __future__ import annotations

from typing import Any

from .handshake import RejectHandshake
from .http import Headers, Request, Response
from .uri import WebSocketURI

__all__ = [
    "PREFACE",
    "Header",
    "request_from_fields",
    "response_fields",
    "extended_connect_fields",
    "response_from_fields",
]

Header = tuple[bytes, bytes]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What an HTTP/2 client sends first: how a cleartext server recognises prior knowledge."""

_CONNECTION_SPECIFIC = frozenset(
    {"connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding"}
)


def request_from_fields(fields: list[Header], remote_address: Any, secure: bool) -> Request:
    """The `Request` a server hands to `process_request` and the handler. `:authority`
    stands in for a missing `Host`, as HTTP/1.1 code expects one. h2 has checked the
    pseudo-headers; a target that is not a path gets 400, as over HTTP/1.1."""
    pseudo: dict[str, str] = {}
    headers = []
    for raw_name, raw_value in fields:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name.startswith(":"):
            pseudo[name] = value
        else:
            headers.append((name, value))
    if "host" not in {name for name, _ in headers} and ":authority" in pseudo:
        headers.insert(0, ("host", pseudo[":authority"]))
    path = pseudo.get(":path", "")
    if not path.startswith("/"):
        why = "Failed to open a WebSocket connection: the request target must be a path starting with /.\n"
        raise RejectHandshake(Response(400, body=why))
    return Request(
        path=path,
        headers=Headers.from_wire(headers),
        remote_address=remote_address,
        method=pseudo.get(":method", "GET"),
        http_version="2",
        scheme="wss" if secure else "ws",
        protocol=pseudo.get(":protocol"),
    )


def response_fields(response: Response, *, server_header: str | None) -> list[Header]:
    """The header block of `response`: the upgrade's 101 becomes `:status 200` (RFC 8441
    section 5); any other answer gets `Server`, `Content-Length` and `Content-Type` as over
    HTTP/1.1. Connection-specific fields, which HTTP/2 forbids, are left out."""
    headers = response.headers.copy()
    status = response.status
    if status == 101:
        status = 200
    else:
        if server_header is not None and "Server" not in headers:
            headers["Server"] = server_header
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(response.body))
        if response.body and "Content-Type" not in headers:
            headers["Content-Type"] = "text/plain; charset=utf-8"
    fields = [(b":status", str(status).encode())]
    for name, value in headers.raw_items():
        lowered = name.lower()
        if lowered not in _CONNECTION_SPECIFIC:
            fields.append((lowered.encode("latin-1"), value.encode("latin-1")))
    return fields


def extended_connect_fields(uri: WebSocketURI, headers: Headers) -> list[Header]:
    """A client's Extended CONNECT for `uri` (RFC 8441 section 4): the pseudo-headers, then
    `headers` (the upgrade request's, less what HTTP/2 forbids or has no use for)."""
    authority = uri.host if ":" not in uri.host else f"[{uri.host}]"
    if uri.port != (443 if uri.secure else 80):
        authority = f"{authority}:{uri.port}"
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https" if uri.secure else b"http"),
        (b":path", uri.resource.encode("latin-1")),
        (b":authority", authority.encode("latin-1")),
    ]
    for name, value in headers.raw_items():
        lowered = name.lower()
        if lowered in _CONNECTION_SPECIFIC or lowered in ("host", "sec-websocket-key"):
            continue
        fields.append((lowered.encode("latin-1"), value.encode("latin-1")))
    return fields


def response_from_fields(fields: list[Header]) -> Response:
    """A client's view of the answer to its Extended CONNECT."""
    status = 0
    headers = []
    for raw_name, raw_value in fields:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name == ":status":
            status = int(value) if value.isdigit() else 0
        elif not name.startswith(":"):
            headers.append((name, value))
    return Response(status, Headers.from_wire(headers))
