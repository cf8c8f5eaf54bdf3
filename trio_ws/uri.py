"""Parse ws:// and wss:// URIs (RFC 6455 section 3). No I/O."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri", "redacted", "redacted_target", "redacted_query"]


@dataclass(frozen=True)
class WebSocketURI:
    """The parts of a WebSocket URI that the client needs."""

    secure: bool
    host: str
    port: int
    resource: str = "/"
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The Host header value: the port is left out when it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


# RFC 3986 sub-delims, ":", "@", "/", "?" and "%" (an existing escape); quote() keeps the
# unreserved characters by itself.
_SAFE_IN_TARGET = "!$&'()*+,;=:@/?%"


def parse_uri(uri: str) -> WebSocketURI:
    """Split a ws:// or wss:// URI; `InvalidURI` says what is wrong with a bad one."""
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(f"{uri!r} is not a valid URI: {exc}") from exc
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(f"{uri!r} is not a WebSocket URI: the scheme must be ws or wss")
    if parsed.fragment:
        raise InvalidURI(f"{uri!r} has a fragment, which WebSocket URIs may not have")
    if not parsed.hostname:
        raise InvalidURI(f"{uri!r} has no host")
    secure = parsed.scheme == "wss"
    resource = parsed.path or "/"
    if parsed.query:
        resource += "?" + parsed.query
    # An IRI (non-ASCII, spaces, control characters) becomes a URI, as in `websockets`:
    # percent-encode what may not appear in a request target, keep existing escapes.
    resource = urllib.parse.quote(resource, safe=_SAFE_IN_TARGET)
    host = parsed.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURI(f"{uri!r} has a host name that IDNA cannot encode: {exc}") from exc
    user_info = None
    if parsed.username is not None:
        user_info = (
            urllib.parse.unquote(parsed.username),
            urllib.parse.unquote(parsed.password or ""),
        )
    return WebSocketURI(
        secure=secure,
        host=host,
        port=port if port is not None else (443 if secure else 80),
        resource=resource,
        user_info=user_info,
    )


def redacted(url: str) -> str:
    """`url` with its password (if any) and the value of each query parameter replaced by
    ***, for messages and logs: `ws://u:***@host/feed?token=***`."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is not None:
        user = parsed.username or ""
        host = parsed.netloc.rpartition("@")[2]
        parsed = parsed._replace(netloc=f"{user}:***@{host}")
    return urllib.parse.urlunsplit(parsed._replace(query=redacted_query(parsed.query)))


def redacted_target(target: str) -> str:
    """A request target ("/feed?token=abc") with each query value replaced by ***."""
    path, mark, query = target.partition("?")
    return path + mark + redacted_query(query)


def redacted_query(query: str) -> str:
    """ "token=abc&since=3" as "token=***&since=***": the names stay, for debugging."""
    if not query:
        return query
    return "&".join(part.partition("=")[0] + ("=***" if "=" in part else "") for part in query.split("&"))
