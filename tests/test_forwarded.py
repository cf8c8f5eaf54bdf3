"""`forwarded_allow_ips`: X-Forwarded-For, X-Forwarded-Proto and RFC 7239 Forwarded, believed
from trusted proxies only, never crashing on what a client sends."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import trio_ws
from trio_ws.forwarded import TrustedProxies
from trio_ws.http import Headers

from .strategies import examples

#: What h11 lets through as a header value: no CR, LF or NUL.
VALUES = st.text(st.characters(blacklist_characters="\r\n\x00"))
NAMES = st.sampled_from(["X-Forwarded-For", "X-Forwarded-Proto", "Forwarded", "x-forwarded-for", "forwarded"])


@given(st.lists(st.tuples(NAMES, VALUES), max_size=6), st.sampled_from(["*", "127.0.0.1", "10.0.0.0/8"]))
@settings(max_examples=examples(500))
def test_any_header_value_gives_an_address_or_nothing_and_never_raises(
    headers: list[tuple[str, str]], trusted: str
) -> None:
    proxies = TrustedProxies([trusted])
    found = proxies.client_of(("127.0.0.1", 5000), Headers(headers))
    if found is not None:
        host, port = found.remote_address
        assert isinstance(host, str) and 0 <= port < 65536
        assert found.scheme in (None, "http", "https", "ws", "wss")


@given(st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_headers_from_a_peer_that_is_not_trusted_are_ignored(headers: list[tuple[str, str]]) -> None:
    assert TrustedProxies(["10.0.0.0/8"]).client_of(("192.0.2.1", 5000), Headers(headers)) is None


@pytest.mark.parametrize(
    ("headers", "client", "scheme"),
    [
        ([("X-Forwarded-For", "203.0.113.7")], ("203.0.113.7", 0), None),
        ([("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.1.2.3")], ("203.0.113.7", 0), None),
        ([("X-Forwarded-For", "10.9.9.9, 10.1.2.3")], ("10.9.9.9", 0), None),  # all trusted: the first
        ([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], ("203.0.113.7", 0), "https"),
        ([("Forwarded", 'for="[2001:db8::1]:4711";proto=https')], ("2001:db8::1", 4711), "https"),
        (
            [("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, for=10.1.1.1")],
            ("192.0.2.60", 0),
            "http",
        ),
        # Forwarded, when present, is the one believed; "unknown" names nobody.
        ([("Forwarded", "for=unknown"), ("X-Forwarded-For", "203.0.113.7")], None, None),
        ([("X-Forwarded-For", "not an address")], None, None),
        ([("X-Forwarded-Proto", "gopher"), ("X-Forwarded-For", "203.0.113.7")], ("203.0.113.7", 0), None),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_our_side(
    headers: list[tuple[str, str]], client: tuple[str, int] | None, scheme: str | None
) -> None:
    found = TrustedProxies(["10.0.0.0/8", "127.0.0.1"]).client_of(("127.0.0.1", 1), Headers(headers))
    if client is None:
        assert found is None
    else:
        assert found is not None and (found.remote_address, found.scheme) == (client, scheme)


def test_a_bad_proxy_address_is_refused_when_the_config_is_built() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None: ...

    with pytest.raises(ValueError, match=r"'example\.com' is not an IP address"):
        trio_ws.ServerConfig(handler=handler, forwarded_allow_ips=["example.com"])
    assert TrustedProxies("127.0.0.1, 10.0.0.0/8").trusts("10.2.3.4")
    assert not TrustedProxies("127.0.0.1").trusts("not an address")
