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
