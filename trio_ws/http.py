"""HTTP values of the opening handshake: `Headers`, `Request`, `Response`. No I/O."""

from __future__ import annotations

import http
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Headers", "HeadersLike", "Request", "Response"]


class Headers(MutableMapping[str, str]):
    """Case-insensitive multi-dict of HTTP headers that keeps their order and spelling.

    `headers[name]` joins repeated fields with ", " (RFC 9110 section 5.3); `get_all(name)`
    returns them one by one (use it for Set-Cookie); `headers[name] = value` appends a
    field; `del headers[name]` removes every field of that name.
    """

    __slots__ = ("_fields", "_packed")

    def __init__(self, headers: HeadersLike = (), /, **kwargs: str) -> None:
        self._fields: list[tuple[str, str]] | None = []
        self._packed = ""  # the fields as "name: value" lines, while `_fields` is None
        if headers:
            self.update_from(headers)
        if kwargs:
            self.update_from(kwargs)

    @property
    def _items(self) -> list[tuple[str, str]]:
        """The fields, unpacked on first use after `pack()`."""
        fields = self._fields
        if fields is None:
            # A name holds no ":" and a value no line break, so each line splits once.
            lines = self._packed.split("\r\n") if self._packed else []
            fields = self._fields = [(n, v) for n, _, v in (line.partition(": ") for line in lines)]
            self._packed = ""
        return fields

    @_items.setter
    def _items(self, fields: list[tuple[str, str]]) -> None:
        self._fields, self._packed = fields, ""

    @classmethod
    def from_wire(cls, fields: Iterable[tuple[str, str]]) -> Headers:
        """Fields known to be valid (checked by an HTTP parser such as h11, or made by this
        library): taken as they are, without checking each one again."""
        headers = cls()
        headers._fields = list(fields)
        return headers

    def by_name(self) -> dict[str, list[str]]:
        """Every field's values, in order, under its lower-cased name: one pass over the
        fields for code that looks up many names (`get_all` makes one per name)."""
        found: dict[str, list[str]] = {}
        for name, value in self._items:
            found.setdefault(name.lower(), []).append(value)
        return found

    def pack(self) -> None:
        """Hold the fields as one string until they are next used: a connection keeps its
        request's headers for its whole life, and most never look at them again (one
        string costs a fifth of a list of pairs)."""
        fields = self._fields
        if fields:
            self._packed = "\r\n".join(f"{name}: {value}" for name, value in fields)
            self._fields = None

    def update_from(self, headers: HeadersLike) -> None:
        """Append every field of a `Headers`, a mapping, or an iterable of pairs."""
        if isinstance(headers, Headers):
            pairs: Iterable[tuple[str, str]] = headers.raw_items()
        elif isinstance(headers, Mapping):
            pairs = headers.items()
        else:
            pairs = headers
        for name, value in pairs:
            self[name] = value

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str, got {name!r}: {value!r}")
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"invalid header field {name!r}: {value!r}")
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [(n, v) for n, v in self._items if n.lower() != key]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._items})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def get_all(self, name: str) -> list[str]:
        """Every value of the field `name`, in order."""
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def raw_items(self) -> list[tuple[str, str]]:
        """Every (name, value) field, in order, with the names as they were spelled."""
        return list(self._items)

    def copy(self) -> Headers:
        """A copy that can be changed on its own."""
        return Headers(self)


HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass
class Request:
    """An HTTP request that reached the server: the WebSocket upgrade, or anything else."""

    #: The request target as sent, query string included, e.g. "/chat?room=1".
    path: str
    headers: Headers
    remote_address: Any = None
    """The client's (host, port, ...) as the socket reports it."""
    method: str = "GET"
    """"GET" for an HTTP/1.1 upgrade; "CONNECT" for a WebSocket over HTTP/2 (RFC 8441)."""
    http_version: str = "1.1"
    """"1.1" for an upgrade over HTTP/1.1 (HTTP/1.0 gets 505), "2" over HTTP/2."""
    scheme: str = "ws"
    """"wss" when the client came over TLS (to this server, or to a trusted proxy that says so in
    `X-Forwarded-Proto` or `Forwarded`), else "ws"."""

    protocol: str | None = None
    """HTTP/2's `:protocol` ("websocket" for an RFC 8441 WebSocket); None over HTTP/1.1."""

    @property
    def path_only(self) -> str:
        """The path without the query string: compare this, not `path`, with "/healthz"."""
        return self.path.partition("?")[0]

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string, parsed: each name with all its values, in order
        (`/chat?room=1&tag=a&tag=b` gives `{"room": ["1"], "tag": ["a", "b"]}`)."""
        return urllib.parse.parse_qs(self.path.partition("?")[2], keep_blank_values=True)


@dataclass(init=False)
class Response:
    """An HTTP response: the 101 that upgrades, or any answer instead of upgrading."""

    status: int
    headers: Headers
    body: bytes

    def __init__(self, status: int, headers: HeadersLike = (), body: bytes | str = b"") -> None:
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    @property
    def reason(self) -> str:
        """The standard reason phrase for `status`."""
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return ""
