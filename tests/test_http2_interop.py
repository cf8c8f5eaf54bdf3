"""RFC 8441 against independent peers: trio_ws's client against hypercorn (its Trio worker,
serving an ASGI echo over HTTP/2), and trio_ws's server against Node's built-in http2 module
with a WebSocket exchange framed by hand."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import trio_ws
from trio_ws.http2_connection import Http2Stream

from .conftest import ROOT, debian_binary, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def hypercorn_server(ca: trustme.CA, tmp_path: Path) -> Iterator[int]:
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "hypercorn_echo.py"), str(cert_file), str(key_file), str(port)],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"hypercorn did not start: {proc.stderr.read()!r}") from None  # type: ignore[union-attr]
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_our_client_against_hypercorn_over_http2(
    hypercorn_server: int, ca: trustme.CA, compression: str | None
) -> None:
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    uri = f"wss://127.0.0.1:{hypercorn_server}/"
    async with trio_ws.connect(uri, ssl_context=client_context, http2=True, compression=compression) as ws:
        assert isinstance(ws._core.transport, Http2Stream)
        assert ws.response.status == 200
        assert ws.response.headers["x-http-version"] == "2"  # hypercorn's word for it
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ("permessage-deflate" in negotiated) == (compression == "deflate")
        for message in ["text é ✓", b"\x00binary\xff", bytes(range(256)) * 4096, "x" * 2**20]:
            await ws.send(message)
            assert await ws.recv() == message
        # A second WebSocket shares the connection.
        async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as second:
            await second.send("two")
            assert await second.recv() == "two"
            assert second.local_address == ws.local_address
        closing = trio.current_time()
    # hypercorn ends its side of the stream once we end ours: a client that waited for the
    # server's END_STREAM first would wait for hypercorn's timeout instead.
    assert trio.current_time() - closing < 2
    assert ws.close_code == 1000


async def test_node_http2_client_against_our_server(ca: trustme.CA, tmp_path: Path) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    seen: list[Any] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        seen.append((ws.path, ws.request.http_version, ws.remote_address))
        async for message in ws:
            await ws.send(message)

    async with trio_ws.open_server(
        handler, "127.0.0.1", 0, ssl_context=server_context, http2=True, subprotocols=["chat"], max_size=2**21
    ) as server:
        node = debian_binary("node", "nodejs")
        with trio.fail_after(60):
            done = await trio.run_process(
                [
                    node,
                    str(ROOT / "tests" / "node" / "h2_client.js"),
                    f"https://127.0.0.1:{server.port}",
                    str(ca_file),
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert report["enableConnectProtocol"] is True
    for result in report["results"]:
        assert result["status"] == 200, result
        assert result["protocol"] == "chat", result
        assert result["echoed"], result
        assert result["closeCode"] == 1000, result
        assert result["ended"], f"the server ends its side of the stream after the close: {result}"
        assert result["reset"] == 0, f"a clean close, no RST_STREAM error: {result}"
    assert sorted(path for path, _, _ in seen) == ["/echo/big", "/echo/binary", "/echo/text"]
    assert {version for _, version, _ in seen} == {"2"}
    assert len({peer for _, _, peer in seen}) == 1, "three WebSockets, one connection"
