"""Open the TCP listening sockets of a server, with errors that say what to do."""

from __future__ import annotations

import errno
import socket

import trio

__all__ = ["open_listeners"]


async def open_listeners(
    host: str | None, port: int, *, backlog: int | None = None, reuse_port: bool = False
) -> list[trio.SocketListener]:
    """Bind and listen on every address `host` resolves to (all families when None).

    With port 0 every listener gets the port the first one was given. When `host` is None
    a family the machine lacks (IPv6, usually) is skipped; an address named explicitly
    that cannot be bound raises an `OSError` whose message says what to do instead.
    """
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in infos))
    # Bind IPv4 first, so that port 0 picks a port that IPv6 then shares.
    addresses.sort(key=lambda item: item[0] != socket.AF_INET)
    listeners: list[trio.SocketListener] = []
    try:
        for family, sockaddr in addresses:
            if listeners and port == 0:
                sockaddr = (sockaddr[0], listeners[0].socket.getsockname()[1], *sockaddr[2:])
            try:
                listeners.append(await _listen(family, sockaddr, backlog, reuse_port))
            except OSError as exc:
                if host is None and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                raise _explain(exc, sockaddr) from exc
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    if not listeners:
        raise OSError(errno.EADDRNOTAVAIL, f"no address to listen on for host {host!r}")
    return listeners


async def _listen(
    family: int, sockaddr: tuple[object, ...], backlog: int | None, reuse_port: bool
) -> trio.SocketListener:
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN if backlog is None else backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _explain(exc: OSError, sockaddr: tuple[object, ...]) -> OSError:
    """Rewrite a bind error into one that names the address and the way out."""
    host, port = sockaddr[0], sockaddr[1]
    where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        hint = "another process is listening there; stop it, or pass port=0 for a free port"
    elif exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        if ":" in str(host):
            hint = (
                "this machine has no such IPv6 address (or no IPv6 at all); "
                'pass host="0.0.0.0" or "127.0.0.1" to listen on IPv4 only'
            )
        else:
            hint = 'no interface has this address; pass host="0.0.0.0" to listen on every IPv4 interface'
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges; pick a port of 1024 or more"
    else:
        hint = exc.strerror or str(exc)
    return OSError(exc.errno, f"error while attempting to bind on address {where}: {hint}")
