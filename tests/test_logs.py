"""Logging as operators expect it: an access log on `trio_ws.access` (refusals, upgrades,
closes) with query values redacted on both sides, `--log-level`, and an app's own logging
configuration left alone."""

from __future__ import annotations

import logging
import signal

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given

import trio_ws
from trio_ws.uri import redacted, redacted_target

from .conftest import free_port
from .service import Service, serve

SECRET = "s3cret"


async def every_kind_of_answer(port: int) -> None:
    """101 (then a close), 503, 401, 404 and 426, each with the token in the query."""
    url = f"ws://127.0.0.1:{port}"
    async with trio_ws.connect(f"{url}/echo?token={SECRET}") as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
        for path, status in (
            (f"/echo?token={SECRET}", 503),
            ("/echo?token=wrong", 401),
            (f"/nope?token={SECRET}", 404),
        ):
            with pytest.raises(trio_ws.InvalidHandshake) as info:
                async with trio_ws.connect(url + path):
                    pass
            assert info.value.status == status
    # A plain GET on a WebSocket path: 426 Upgrade Required. The one connection slot is
    # free once the server's handler has finished, which may be a moment after the client
    # saw the close: until then the answer is 503.
    with trio.fail_after(5):
        while True:
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(f"GET /echo?token={SECRET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                answer = await stream.receive_some(1000)
            if b" 503 " not in answer:
                break
            await trio.sleep(0.01)
    assert b" 426 " in answer, answer


async def logged(service: Service, *statuses: str) -> list[str]:
    return [await service.line(rf'" {status}$', stream="err", seconds=10) for status in statuses]


async def test_the_access_log_has_a_line_per_answer_and_per_close_with_queries_redacted() -> None:
    port = free_port()
    async with serve("tests.cli_app:config", "--port", str(port), "--log-level", "info") as service:
        await service.line("listening on")
        await every_kind_of_answer(port)
        lines = await logged(service, "101", "503", "401", "404", "426")
        closed = await service.line(
            r'"WebSocket /echo\?token=\*\*\*" closed 1000 after [\d.]+ s, \d+ bytes in, \d+ bytes out',
            stream="err",
        )
        service.signal(signal.SIGTERM)
        await service.wait(15)
    for line in [*lines, closed]:
        assert "trio_ws.access INFO 127.0.0.1:" in line, line
        assert "token=***" in line, line
    assert '"GET /echo?token=*** HTTP/1.1" 101' in lines[0]
    assert not [line for line in service.err if SECRET in line], service.err


async def test_no_redact_logs_shows_the_query_for_debugging() -> None:
    port = free_port()
    async with serve(
        "tests.cli_app:config", "--port", str(port), "--log-level", "info", "--no-redact-logs"
    ) as service:
        await service.line("listening on")
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo?token={SECRET}"):
            pass
        line = await service.line(" 101$", stream="err")
        assert f"token={SECRET}" in line


async def test_log_level_debug_shows_debug_records_and_the_default_shows_no_access_log() -> None:
    port = free_port()
    async with serve("tests.cli_app:config", "--port", str(port), "--log-level", "debug") as service:
        await service.line("listening on")
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo?token={SECRET}"):
            pass
        await service.line(r"trio_ws\.\w+ DEBUG ", stream="err")
    port = free_port()
    async with serve("tests.cli_app:config", "--port", str(port)) as service:
        await service.line("listening on")
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo?token={SECRET}"):
            pass
        service.signal(signal.SIGTERM)
        await service.wait(15)
    assert not [line for line in service.err if "trio_ws.access" in line], service.err


async def test_an_apps_own_logging_configuration_is_respected() -> None:
    """tests/logging_app.py calls basicConfig(level=INFO, format="APP ...") at import: its
    format is used, and its INFO level shows the access log without --log-level."""
    port = free_port()
    async with serve("tests.logging_app:config", "--port", str(port)) as service:
        await service.line("listening on")
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo?token={SECRET}"):
            pass
        line = await service.line(" 101$", stream="err")
    assert line.startswith("APP trio_ws.access INFO "), line


async def test_the_client_redacts_queries_in_its_logs(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nobody listens there
    caplog.set_level(logging.INFO, logger="trio_ws")
    for redact in (True, False):
        caplog.clear()
        uri = f"ws://u:pw@127.0.0.1:{port}/feed?token={SECRET}"
        with trio.move_on_after(0.3):
            async with trio_ws.reconnect(uri, initial_delay=0.05, redact_logs=redact) as connections:
                async for _ in connections:
                    pass
        text = caplog.text
        assert "could not connect to" in text
        if redact:
            assert SECRET not in text and "pw" not in text and "token=***" in text
        else:
            assert f"token={SECRET}" in text


@given(st.text())
def test_redaction_keeps_no_query_value_and_every_name(query: str) -> None:
    target = redacted_target("/path?" + query)
    path, _, shown = target.partition("?")
    assert path == "/path"
    expected = [
        name + sep + ("***" if sep else "") for name, sep, _ in (p.partition("=") for p in query.split("&"))
    ]
    assert shown.split("&") == expected


@given(st.from_regex(r"[a-z]{1,8}=[^&#*\s]{1,20}(&[a-z]{1,8}=[^&#*\s]{1,20}){0,3}", fullmatch=True))
def test_a_uri_redacted_shows_no_value_of_its_query(query: str) -> None:
    shown = redacted(f"wss://user:pass@example.com/x?{query}")
    assert "pass" not in shown.replace("***", "")
    for part in query.split("&"):
        name = part.partition("=")[0]
        assert f"{name}=***" in shown and part not in shown
