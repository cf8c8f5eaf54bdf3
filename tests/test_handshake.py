"""The opening handshake over real sockets: upgrades, refusals, subprotocols, limits."""

from __future__ import annotations

import pytest
import trio

import trio_ws
from trio_ws.handshake import accept_key

from .conftest import HANDSHAKE, RawClient, echo, ws_url


async def http_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the status, headers (lower-cased names) and body."""
    raw = await RawClient.connect(port, handshake=False)
    await raw.stream.send_all(request)
    with trio.fail_after(5):
        data = await raw.read_to_eof(websocket=False)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def request(**overrides: str | None) -> bytes:
    """The standard upgrade request with some headers changed (None removes one)."""
    lines = HANDSHAKE.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return (lines[0] + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode()


def test_accept_key_matches_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_valid_upgrade_gets_101(echo_server: trio_ws.WebSocketServer) -> None:
    raw = await RawClient.connect(echo_server.port, handshake=False)
    await raw.stream.send_all(HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await raw.stream.receive_some()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    await raw.stream.aclose()


async def test_plain_get_gets_426_saying_why(echo_server: trio_ws.WebSocketServer) -> None:
    status, headers, body = await http_exchange(
        echo_server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert status == 426 and headers["upgrade"] == "websocket"
    assert b"not an upgrade" in body and b"Upgrade: websocket" in body


async def test_wrong_version_gets_426_with_supported_version(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    status, headers, body = await http_exchange(echo_server.port, request(Sec_WebSocket_Version="8"))
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert b"version 13" in body


@pytest.mark.parametrize(
    "overrides",
    [
        {"Sec_WebSocket_Key": None},
        {"Sec_WebSocket_Key": "not base64!"},
        {"Sec_WebSocket_Key": "c2hvcnQ="},  # decodes to 5 bytes, not 16
        {"Connection": "keep-alive"},
    ],
)
async def test_bad_upgrade_gets_400(
    echo_server: trio_ws.WebSocketServer, overrides: dict[str, str | None]
) -> None:
    status, _, body = await http_exchange(echo_server.port, request(**overrides))
    assert status == 400
    assert body.startswith(b"Failed to open a WebSocket connection")


async def test_not_http_at_all_gets_400(echo_server: trio_ws.WebSocketServer) -> None:
    status, _, _ = await http_exchange(echo_server.port, b"\x16\x03\x01 this is not http\r\n\r\n")
    assert status == 400


async def test_oversized_request_head_gets_431(echo_server: trio_ws.WebSocketServer) -> None:
    status, _, _ = await http_exchange(echo_server.port, request(X_Big="x" * 20000))
    assert status == 431


async def test_origins() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, origins=["https://good.example"]) as server:
        status, _, body = await http_exchange(server.port, request(Origin="https://evil.example"))
        assert status == 403 and b"evil.example" in body
        status, _, _ = await http_exchange(server.port, request())
        assert status == 403  # no Origin while origins are required
        async with trio_ws.connect(ws_url(server), origin="https://good.example") as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"


async def test_subprotocol_negotiation() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send(str(ws.subprotocol))

    async with trio_ws.open_server(handler, "127.0.0.1", 0, subprotocols=["chat.v2", "chat.v1"]) as server:
        async with trio_ws.connect(ws_url(server), subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"  # the server's preference wins
            assert await ws.recv() == "chat.v2"
        async with trio_ws.connect(ws_url(server)) as ws:  # offering none is accepted
            assert ws.subprotocol is None
            assert await ws.recv() == "None"
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with trio_ws.connect(ws_url(server), subprotocols=["other"]):
                pass
        assert info.value.status == 400
        assert b"chat.v2" in info.value.body


async def test_client_sees_status_headers_and_body_of_a_refusal() -> None:
    def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
        if request.path == "/private?x=1":
            return trio_ws.Response(401, {"WWW-Authenticate": 'Basic realm="x"'}, "who are you?\n")
        return None

    async with trio_ws.open_server(echo, "127.0.0.1", 0, process_request=process_request) as server:
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with trio_ws.connect(ws_url(server, "/private?x=1")):
                pass
        assert info.value.status == 401
        assert isinstance(info.value.headers, trio_ws.Headers)
        assert info.value.headers["www-authenticate"] == 'Basic realm="x"'
        assert info.value.body == b"who are you?\n"
        async with trio_ws.connect(ws_url(server, "/public")) as ws:
            assert ws.path == "/public"


async def test_request_headers_and_extra_headers() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send(ws.request_headers["X-Token"])

    async with (
        trio_ws.open_server(
            handler, "127.0.0.1", 0, extra_headers={"X-Served-By": "test"}, server_header=None
        ) as server,
        trio_ws.connect(ws_url(server), extra_headers=[("X-Token", "t0k")]) as ws,
    ):
        assert await ws.recv() == "t0k"
        assert ws.response_headers["X-Served-By"] == "test"
        assert "Server" not in ws.response_headers


@pytest.mark.parametrize(
    "uri", ["http://example.com/", "ws://", "ws://host:notaport/", "ws://host/#frag", "example.com"]
)
async def test_invalid_uris(uri: str) -> None:
    with pytest.raises(trio_ws.InvalidURI):
        async with trio_ws.connect(uri):
            pass


async def test_connection_refused_is_an_os_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with pytest.raises(OSError):
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/"):
            pass


async def test_wss_with_trustme() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=server_ctx) as server:
        async with trio_ws.connect(f"wss://127.0.0.1:{server.port}/", ssl_context=client_ctx) as ws:
            await ws.send("secure")
            assert await ws.recv() == "secure"
            assert ws.remote_address[0] == "127.0.0.1"
        assert ws.close_code == 1000
        with pytest.raises(ValueError, match="wss"):
            async with trio_ws.connect(ws_url(server), ssl_context=client_ctx):
                pass
