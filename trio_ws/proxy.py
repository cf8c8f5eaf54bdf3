"""Reaching a WebSocket server through a proxy: HTTP(S) CONNECT, written with h11, or SOCKS
through `python-socks` (the `socks` extra: `pip install trio-ws[socks]`).

`proxy_for` chooses the proxy the way `urllib.request` does: from `HTTPS_PROXY` (wss://),
`HTTP_PROXY` (ws://) or `ALL_PROXY`, unless `NO_PROXY` names the host. The tunnel is a
plain byte stream to the server; TLS for wss:// runs inside it, with the server's name.
"""

from __future__ import annotations

import base64
import ssl
import urllib.parse
import urllib.request

import h11
import trio

from .exceptions import ProxyError
from .http import Headers
from .uri import WebSocketURI, redacted

__all__ = [
    "PROXY_SCHEMES",
    "UseEnvironment",
    "USE_ENVIRONMENT",
    "proxy_for",
    "check_proxy_url",
    "open_tunnel",
]

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080, "socks4a": 1080}
_MAX_ANSWER = 16384  # bytes of a proxy's answer to CONNECT


class UseEnvironment:
    """The default of `connect(proxy=...)`: the proxy the environment names, if any."""

    def __repr__(self) -> str:
        return "USE_ENVIRONMENT"


USE_ENVIRONMENT = UseEnvironment()


def proxy_for(uri: WebSocketURI, proxy: str | UseEnvironment | None) -> str | None:
    """The proxy URL to reach `uri` through, or None for a direct connection."""
    if proxy is None:
        return None
    if isinstance(proxy, str):
        check_proxy_url(proxy)
        return proxy
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get("https" if uri.secure else "http") or proxies.get("all")
    if not chosen or urllib.request.proxy_bypass_environment(uri.host, proxies):  # type: ignore[attr-defined]
        return None
    if "://" not in chosen:  # "host:port", as some environments say it
        chosen = "http://" + chosen
    check_proxy_url(chosen)
    return chosen


def check_proxy_url(url: str) -> None:
    """A ValueError that says what is wrong with a proxy URL (its password redacted)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{redacted(url)!r} is not a valid proxy URL: {exc}") from None
    if parsed.scheme not in PROXY_SCHEMES or not parsed.hostname:
        raise ValueError(
            f"{redacted(url)!r} is not a proxy URL: expected {', '.join(PROXY_SCHEMES)}://host:port"
        )


async def open_tunnel(proxy: str, host: str, port: int) -> trio.abc.Stream:
    """A byte stream to `host:port` through the proxy at `proxy`; `ProxyError` if it refuses."""
    parsed = urllib.parse.urlsplit(proxy)
    scheme = parsed.scheme
    proxy_host = parsed.hostname or ""
    proxy_port = parsed.port or _DEFAULT_PORTS[scheme]
    user = urllib.parse.unquote(parsed.username) if parsed.username else None
    password = urllib.parse.unquote(parsed.password or "") if parsed.username else None
    if scheme.startswith("socks"):
        return await _socks_tunnel(proxy, scheme, proxy_host, proxy_port, user, password, host, port)
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(proxy_host, proxy_port)
    except OSError as exc:
        raise ProxyError(f"cannot reach proxy {redacted(proxy)}: {exc}") from exc
    try:
        if scheme == "https":
            stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=proxy_host)
            await stream.do_handshake()
        return await _http_connect(stream, proxy, user, password, host, port)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _http_connect(
    stream: trio.abc.Stream, proxy: str, user: str | None, password: str | None, host: str, port: int
) -> trio.abc.Stream:
    """Ask an HTTP proxy for a tunnel with CONNECT; bytes after its 2xx are the server's."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    headers = [("Host", authority)]
    if user is not None:
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers.append(("Proxy-Authorization", f"Basic {credentials}"))
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_ANSWER)
    await stream.send_all(connection.send(h11.Request(method="CONNECT", target=authority, headers=headers)))
    connection.send(h11.EndOfMessage())
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProxyError(
                f"proxy {redacted(proxy)} answered CONNECT with something not HTTP: {exc}"
            ) from exc
        if event is h11.NEED_DATA:
            data = await stream.receive_some()
            if not data:
                raise ProxyError(
                    f"proxy {redacted(proxy)} closed the connection instead of answering CONNECT"
                )
            connection.receive_data(bytes(data))
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            if not 200 <= event.status_code < 300:
                answer = f"HTTP {event.status_code} {event.reason.decode('latin-1', 'replace')}"
                raise ProxyError(
                    f"proxy {redacted(proxy)} refused the tunnel to {authority}: {answer}",
                    status=event.status_code,
                    headers=Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]),
                )
            data, _ = connection.trailing_data
            return _Prefixed(stream, bytes(data)) if data else stream


async def _socks_tunnel(
    proxy: str,
    scheme: str,
    proxy_host: str,
    proxy_port: int,
    user: str | None,
    password: str | None,
    host: str,
    port: int,
) -> trio.abc.Stream:
    try:
        from python_socks import ProxyError as SocksError
        from python_socks import ProxyTimeoutError, ProxyType
        from python_socks.async_.trio import Proxy
    except ImportError:
        raise ImportError("a socks:// proxy needs python-socks: pip install trio-ws[socks]") from None
    kind = ProxyType.SOCKS5 if scheme.startswith("socks5") else ProxyType.SOCKS4
    remote_names = scheme in ("socks5h", "socks4a")  # the proxy resolves the server's name
    tunnel = Proxy(kind, proxy_host, proxy_port, user, password, rdns=remote_names)
    try:
        sock = await tunnel.connect(host, port)
    except OSError as exc:  # python-socks's ProxyConnectionError: the proxy is not there
        raise ProxyError(f"cannot reach proxy {redacted(proxy)}: {exc}") from exc
    except SocksError as exc:
        raise ProxyError(f"proxy {redacted(proxy)} refused the tunnel to {host}:{port}: {exc}") from exc
    except ProxyTimeoutError as exc:
        raise TimeoutError(f"proxy {redacted(proxy)} did not answer in time") from exc
    return trio.SocketStream(sock)


class _Prefixed(trio.abc.Stream):
    """A stream that first returns bytes already read from it (what followed a proxy's 2xx)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()
