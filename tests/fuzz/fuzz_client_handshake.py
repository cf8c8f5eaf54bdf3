"""Fuzz the client's response parser.

Half the inputs start from a real 101 with the right Sec-WebSocket-Accept, so the fuzzer
also works on the header checks. Invariants: nothing escapes but `InvalidHandshake`; a
response that is accepted is a 101 with the right accept key, only extensions and a
subprotocol that were offered, and a usable deflate codec if it agreed one.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["trio_ws", "h11"]):
    from trio_ws.exceptions import InvalidHandshake
    from trio_ws.extensions.permessage_deflate import DeflateConfig
    from trio_ws.handshake import ClientHandshake, accept_key
    from trio_ws.uri import parse_uri

URI = parse_uri("ws://127.0.0.1:8765/chat?x=1")


def one_input(data: bytes) -> None:
    """data[0] picks the client's options; the rest is the response. With bit 4 set, a
    real 101 head with the right accept key comes first and the rest adds headers."""
    if not data:
        return
    flags, rest = data[0], data[1:]
    subprotocols = (None, ["chat"], ["a", "b"], None)[flags & 3]
    handshake = ClientHandshake(
        URI, subprotocols=subprotocols, compression=DeflateConfig() if flags & 4 else None
    )
    handshake.request_bytes()
    wire = rest
    if flags & 16:
        wire = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(handshake.key).encode() + b"\r\n" + rest
        )
    step = (1, 23, 1 << 30, 1 << 30)[flags >> 6]
    try:
        response = None
        for chunk in [*(wire[i : i + step] for i in range(0, len(wire), step)), b""]:
            handshake.receive_data(chunk)
            if (response := handshake.next_response()) is not None:
                break
    except InvalidHandshake:
        return
    if response is None:
        return
    assert response.status == 101
    assert response.headers.get("Sec-WebSocket-Accept") == accept_key(handshake.key)
    if handshake.subprotocol is not None:
        assert subprotocols and handshake.subprotocol in subprotocols
    if handshake.deflate is not None:
        assert handshake.deflate.decompress(handshake.deflate.compress(b"hello", True), True, 10) == b"hello"


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
