"""`Router`: dispatch connections to handlers by request path, with 404 for the rest."""

from __future__ import annotations

import inspect
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .connection import WebSocket
from .http import Request, Response

__all__ = ["Router"]

RouteHandler = Callable[..., Awaitable[None]]
H = TypeVar("H", bound=RouteHandler)
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Router:
    """A handler that picks another handler by path.

    `@router.route("/chat/{room}")` registers `async def handler(ws, room)`: each `{name}`
    matches one path segment (percent-decoded) and is passed by keyword. The query string is
    ignored for matching; the path is matched as sent, so `//x/admin` or `/%61dmin` is not
    `/admin` (the same string a `process_request` guard sees in `request.path`). Routes are
    tried in the order they were added. A request whose path matches no route is answered
    with HTTP 404 before any upgrade.
    """

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], RouteHandler]] = []

    def route(self, pattern: str) -> Callable[[H], H]:
        """Decorator: register the decorated handler for `pattern`."""

        def register(handler: H) -> H:
            self.add(pattern, handler)
            return handler

        return register

    def add(self, pattern: str, handler: RouteHandler) -> None:
        """Register `handler` for `pattern` (see the class docstring)."""
        if not pattern.startswith("/"):
            raise ValueError(f"route {pattern!r} must start with /")
        check_signature(pattern, handler, _PARAMETER.findall(pattern))
        regex, position = "", 0
        for match in _PARAMETER.finditer(pattern):
            regex += re.escape(pattern[position : match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
            position = match.end()
        regex += re.escape(pattern[position:])
        self._routes.append((re.compile(f"^{regex}$"), handler))

    def match(self, path: str) -> tuple[RouteHandler, dict[str, str]] | None:
        """The handler and its keyword arguments for `path`, or None."""
        bare = _path_of(path)
        for regex, handler in self._routes:
            found = regex.match(bare)
            if found:
                return handler, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        return None

    def process_request(self, request: Request) -> Response | None:
        """Called by the server before upgrading: 404 for a path no route matches."""
        if self.match(request.path) is None:
            return Response(404, body=f"no WebSocket endpoint at {_path_of(request.path)}\n")
        return None

    async def __call__(self, ws: WebSocket) -> None:
        found = self.match(ws.path)
        if found is None:  # only when the server did not consult process_request
            await ws.close(1008, "no route for this path")
            return
        handler, params = found
        await handler(ws, **params)

    def __repr__(self) -> str:
        return f"<Router {[regex.pattern for regex, _ in self._routes]}>"


def check_signature(pattern: str, handler: RouteHandler, parameters: list[str]) -> None:
    """A TypeError now, naming the route and its parameters, if `handler` cannot be called
    as `handler(ws, **parameters)`: not at the first connection, as a 1011."""
    if not callable(handler):
        raise TypeError(f"route {pattern!r}: {handler!r} is not a handler (not callable)")
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # a callable Python cannot introspect: trusted as it is
    try:
        signature.bind(None, **dict.fromkeys(parameters, ""))
    except TypeError as exc:
        name = getattr(handler, "__qualname__", repr(handler))
        wanted = ", ".join(["ws", *parameters])
        raise TypeError(
            f"route {pattern!r} calls its handler as {name}({wanted}), but it is {name}{signature}: {exc}"
        ) from None


def _path_of(target: str) -> str:
    """The path of an origin-form request target, as sent: everything before the query.

    Not `urlsplit`, which reads `//host/admin` as a host and the path `/admin`.
    """
    return target.partition("?")[0]
