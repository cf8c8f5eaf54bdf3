"""A real browser: headless Chromium loads a page from trio_ws over HTTPS (a trustme CA) and
opens three WebSockets to the same origin, over one HTTP/2 connection as RFC 8441 streams;
with HTTP/2 turned off in Chromium, the same page makes three HTTP/1.1 upgrades instead."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from .conftest import ROOT, readline_within
from .test_demo import ensure_chromium

pytestmark = pytest.mark.timeout(900)  # the browser fixture may install Chromium


def spki_hash(cert_pem: bytes) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: the base64 SHA-256 of
    the certificate's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert_pem).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str], str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "http2_page_server.py"), str(cert_file), str(key_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = readline_within(proc.stdout, 30)
    assert line.startswith("listening on"), line
    yield int(line.split()[-1]), proc, spki_hash(cert.cert_chain_pems[0].bytes())
    proc.terminate()
    proc.wait(10)


def load_the_page(port: int, spki: str, *extra_args: str) -> str:
    """Open the page in headless Chromium; the echoes it showed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=ensure_chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                f"--ignore-certificate-errors-spki-list={spki}",
                *extra_args,
            ],
        )
        try:
            page = browser.new_page()
            response = page.goto(f"https://127.0.0.1:{port}/")
            assert response is not None and response.ok
            page.wait_for_function("document.title === 'done'", timeout=20_000)
            echoed: str = page.inner_text("#out")
        finally:
            browser.close()
    return echoed


def websocket_lines(proc: subprocess.Popen[str], count: int) -> list[list[str]]:
    assert proc.stdout is not None
    return [readline_within(proc.stdout, 10).split() for _ in range(count)]


def test_chromium_opens_three_websockets_over_one_http2_connection(page_server: Any) -> None:
    port, proc, spki = page_server
    echoed = load_the_page(port, spki)
    assert echoed == '["hello 0","hello 1","hello 2"]'
    lines = websocket_lines(proc, 3)
    assert [line[:2] for line in lines] == [["websocket", "2"]] * 3, lines
    assert len({line[2] for line in lines}) == 1, f"one TCP connection for all three: {lines}"


def test_without_http2_chromium_makes_three_http11_upgrades(page_server: Any) -> None:
    """The negative control: the same page, the same server, HTTP/2 off in the browser."""
    port, proc, spki = page_server
    echoed = load_the_page(port, spki, "--disable-http2")
    assert echoed == '["hello 0","hello 1","hello 2"]'
    lines = websocket_lines(proc, 3)
    assert [line[:2] for line in lines] == [["websocket", "1.1"]] * 3, lines
    assert len({line[2] for line in lines}) == 3, f"a connection each: {lines}"


def test_the_demo_over_https_and_http2_in_chromium(tmp_path: Path) -> None:
    """`python -m trio_ws demo --certfile ... --http2`: Chromium loads the page over HTTP/2
    and its chat WebSocket rides the same connection as an RFC 8441 stream."""
    from playwright.sync_api import sync_playwright

    from .conftest import free_port

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "trio_ws", "demo", "--port", str(port), "--certfile", str(pem), "--http2",
         "--log-level", "info"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        assert f"chat demo on https://127.0.0.1:{port}/" in readline_within(demo.stdout, 30)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=ensure_chromium(),
                args=["--no-sandbox", "--disable-gpu", "--disable-quic",
                      f"--ignore-certificate-errors-spki-list={spki_hash(cert.cert_chain_pems[0].bytes())}"],
            )  # fmt: skip
            try:
                page = browser.new_page()
                page.goto(f"https://127.0.0.1:{port}/")
                assert page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
                page.fill("#name", "ann")
                page.fill("#room", "h2")
                page.click("#join-button")
                page.wait_for_selector("#status.ok", timeout=10_000)
                page.fill("#text", "over one connection")
                page.click("#send")
                page.wait_for_function(
                    "document.querySelectorAll('#log li.message').length >= 1", timeout=10_000
                )
            finally:
                browser.close()
    finally:
        demo.terminate()
        _, log = demo.communicate(timeout=10)
    assert '"CONNECT /ws HTTP/2" 101' in log, log[-2000:]
