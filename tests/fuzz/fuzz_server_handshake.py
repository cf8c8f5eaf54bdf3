"""Fuzz the server's request parser and its answer.

Invariants: reading a request raises nothing but `RejectHandshake` (an HTTP answer) or
`EOFError` (the client left); accepting raises nothing but `RejectHandshake`; every answer
serializes; a 101 only answers a GET over HTTP/1.1 with a valid key and no body, for an
origin-form target.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["trio_ws", "h11"]):
    from trio_ws.extensions.permessage_deflate import DeflateConfig
    from trio_ws.handshake import RejectHandshake, ServerHandshake


def one_input(data: bytes) -> None:
    """data[0] picks the server's options and the chunk size; the rest is the request."""
    if not data:
        return
    flags, wire = data[0], data[1:]
    handshake = ServerHandshake(
        subprotocols=(None, ["chat"], ["a", "b"], None)[flags & 3],
        origins=(None, ["https://ok.example"], [None, "x"], None)[flags >> 2 & 3],
        compression=DeflateConfig() if flags & 16 else None,
        server_header="fuzz" if flags & 32 else None,
    )
    step = (1, 17, 200, 1 << 30)[flags >> 6]
    chunks = [wire[i : i + step] for i in range(0, len(wire), step)] + [b""]  # b"": the client left
    try:
        request = None
        while request is None:
            request = handshake.next_request()
            if request is None:
                handshake.receive_data(chunks.pop(0))
    except (EOFError, IndexError):  # the client left, or sent nothing more
        return
    except RejectHandshake as rejection:
        handshake.send_response(rejection.response)
        return
    try:
        response = handshake.accept(request)
    except RejectHandshake as rejection:
        response = rejection.response
    out = handshake.send_response(response)
    assert out.startswith(b"HTTP/1.1 %d" % response.status), out[:40]
    if response.status == 101:
        assert request.method == "GET" and request.http_version == "1.1"
        assert request.path.startswith("/")
        assert request.headers.get("Content-Length", "0") == "0"
        assert "Transfer-Encoding" not in request.headers
        assert "Sec-WebSocket-Accept" in response.headers


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
