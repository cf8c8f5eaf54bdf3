"""Who the client really is behind a reverse proxy: `X-Forwarded-For`, `X-Forwarded-Proto`
and RFC 7239 `Forwarded`, believed only when the peer that sent them is a trusted proxy.

Anybody can send these headers, so they are read only from the peers named in
`forwarded_allow_ips`; from anyone else they are ignored. Through a chain of trusted proxies
the client is the last address in the list that is not itself a trusted proxy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from typing import Any

from .http import Headers

__all__ = ["TrustedProxies", "Forwarded"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class Forwarded:
    """What trusted proxies said about the client: its address and the scheme it used."""

    remote_address: tuple[str, int]
    scheme: str | None


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses, networks, or "*"."""

    def __init__(self, patterns: Sequence[str]) -> None:
        if isinstance(patterns, str):
            patterns = [part.strip() for part in patterns.split(",") if part.strip()]
        self._any = False
        self._networks: list[IPNetwork] = []
        for pattern in patterns:
            if pattern == "*":
                self._any = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {pattern!r} is not an IP address, a network (10.0.0.0/8) or *"
                ) from None

    def trusts(self, host: object) -> bool:
        """Whether `host` (an address as a string) is one of the trusted proxies."""
        if self._any:
            return True
        try:
            address = ipaddress.ip_address(str(host).strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_of(self, peer: Any, headers: Headers) -> Forwarded | None:
        """The client that trusted proxies name, or None to keep `peer` (not a trusted
        proxy, or no usable header). `Forwarded` is preferred over `X-Forwarded-*`."""
        if not isinstance(peer, tuple) or not peer or not self.trusts(peer[0]):
            return None
        named, schemes = _forwarded(headers)
        if not named:
            named = [_split_port(part) for part in _list(headers, "X-Forwarded-For")]
            schemes = _list(headers, "X-Forwarded-Proto")
        hops = [hop for hop in named if hop is not None]
        if not hops:
            return None
        client = hops[0]
        for hop in reversed(hops):  # the first untrusted address from our side is the client
            client = hop
            if not self.trusts(hop[0]):
                break
        scheme = (
            schemes[-1].lower() if schemes and schemes[-1].lower() in ("http", "https", "ws", "wss") else None
        )
        return Forwarded(client, scheme)


def _list(headers: Headers, name: str) -> list[str]:
    return [item.strip() for value in headers.get_all(name) for item in value.split(",") if item.strip()]


def _forwarded(headers: Headers) -> tuple[list[tuple[str, int] | None], list[str]]:
    """The `for=` of each element of RFC 7239 `Forwarded` headers, and their `proto=`."""
    hops: list[tuple[str, int] | None] = []
    schemes: list[str] = []
    for element in _list(headers, "Forwarded"):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            value = value.strip().strip('"')
            if name.lower() == "for":
                hops.append(_split_port(value))
            elif name.lower() == "proto" and value:
                schemes.append(value)
    return hops, schemes


def _split_port(text: str) -> tuple[str, int] | None:
    """("203.0.113.7", 0) from "203.0.113.7", ("2001:db8::1", 4711) from "[2001:db8::1]:4711";
    None for anything that is not an IP address (obfuscated ids, "unknown", garbage)."""
    host, port = text.strip(), 0
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
        port = int(port_text) if port_text.isdigit() else 0
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, port if port < 65536 else 0)
