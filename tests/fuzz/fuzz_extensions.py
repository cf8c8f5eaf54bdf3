"""Fuzz the Sec-WebSocket-Extensions negotiation.

Invariants: parsing raises nothing but `NegotiationError`; whatever the server accepts it
states in a header that parses back to the same parameters; codecs built from those
parameters, one per side, carry a message each way intact.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from trio_ws.extensions.permessage_deflate import (
        DeflateConfig,
        NegotiationError,
        PerMessageDeflate,
        parse_extensions,
        server_accept,
    )

CONFIGS = [
    DeflateConfig(),
    DeflateConfig(server_max_window_bits=15, client_max_window_bits=15),
    DeflateConfig(server_no_context_takeover=True, client_max_window_bits=9),
]


def one_input(data: bytes) -> None:
    """data[0] picks the server's configuration; the rest is the header, one value a line."""
    if not data:
        return
    config = CONFIGS[data[0] % len(CONFIGS)]
    values = data[1:].decode("latin-1").split("\n")
    try:
        offers = parse_extensions(values)
    except NegotiationError:
        return
    params = server_accept(offers, config)
    if params is None:
        return
    (name, answer), *rest = parse_extensions([params.header()])
    assert name == "permessage-deflate" and not rest
    again = server_accept(
        [(name, answer)], DeflateConfig(server_max_window_bits=15, client_max_window_bits=15)
    )
    assert again is not None
    server = PerMessageDeflate(params, is_server=True, config=config)
    client = PerMessageDeflate(params, is_server=False, config=config)
    for message in (b"fuzz " * 50, b"", bytes(range(256)) * 40):
        assert client.decompress(server.compress_message(message), True, None) == message
        assert server.decompress(client.compress_message(message), True, None) == message


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
