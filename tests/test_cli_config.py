"""`python -m trio_ws serve module:config`: a `ServerConfig`'s options, and the flags that
replace them, reach every worker, checked over real sockets to each process."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import pytest
import trio

import trio_ws

from .cli_app import TOKEN
from .conftest import ROOT, free_port, readline_within

pytestmark = pytest.mark.timeout(180)
ATTEMPTS = 200  # connections tried before concluding a worker is never reached


@contextmanager
def running(*flags: str, workers: int = 2) -> Iterator[tuple[int, set[str]]]:
    """`python -m trio_ws serve tests.cli_app:config --workers N FLAGS...`: its port and
    the process ids of its workers, once each listens."""
    port = free_port()
    command = [sys.executable, "-m", "trio_ws", "serve", "tests.cli_app:config", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers), *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pids = set()
        for _ in range(workers):
            line = readline_within(proc.stdout, 30)
            assert "listening on" in line, line
            pids.add(line.split()[1])
        yield port, pids
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


async def refusal(uri: str, **options: object) -> trio_ws.InvalidHandshake:
    try:
        async with trio_ws.connect(uri, **options):  # type: ignore[arg-type]
            pass
    except trio_ws.InvalidHandshake as exc:
        return exc
    raise AssertionError(f"{uri} was accepted")


async def test_every_worker_applies_the_configs_process_request_and_max_connections() -> None:
    with running() as (port, pids):
        base = f"ws://127.0.0.1:{port}/echo"
        refused_by: set[str] = set()
        with trio.fail_after(60):
            for _ in range(ATTEMPTS):
                exc = await refusal(base)
                assert exc.status == 401 and "a valid ?token= is needed" in str(exc), exc
                refused_by.add(exc.headers["X-Worker"])
                if refused_by == pids:
                    break
        assert refused_by == pids, "some worker never answered 401 without a token"

        # max_connections=1 in each process: hold one connection on each worker, and see
        # each worker answer 503 to the next one.
        held: dict[str, trio_ws.WebSocket] = {}
        full: set[str] = set()
        # (The deadline encloses the stack: the connections' nurseries must not outlive it.)
        with trio.fail_after(60):
            async with AsyncExitStack() as stack:
                for _ in range(ATTEMPTS):
                    try:
                        ws = await stack.enter_async_context(trio_ws.connect(f"{base}?token={TOKEN}"))
                    except trio_ws.InvalidHandshake as exc:
                        assert exc.status == 503 and exc.headers["X-Worker"] in held, exc
                        full.add(exc.headers["X-Worker"])
                    else:
                        worker = ws.response_headers["X-Worker"]
                        assert worker not in held, "a worker took a second connection past max_connections=1"
                        held[worker] = ws
                    if set(held) == full == pids:
                        break
                assert set(held) == pids and full == pids
                for ws in held.values():
                    await ws.send("still here")
                    assert await ws.recv() == "still here"


async def test_flags_replace_the_configs_options_in_every_worker() -> None:
    with running("--max-connections", "none", "--max-size", "100") as (port, pids):
        uri = f"ws://127.0.0.1:{port}/echo?token={TOKEN}"
        held: dict[str, trio_ws.WebSocket] = {}
        with trio.fail_after(60):
            async with AsyncExitStack() as stack:
                for _ in range(ATTEMPTS):  # no limit now: every connection is accepted
                    ws = await stack.enter_async_context(trio_ws.connect(uri))
                    held.setdefault(ws.response_headers["X-Worker"], ws)
                    if set(held) == pids:
                        break
                assert set(held) == pids
                for ws in held.values():
                    await ws.send("x" * 100)
                    assert await ws.recv() == "x" * 100
                    await ws.send("x" * 101)
                    with pytest.raises(trio_ws.ConnectionClosed):
                        await ws.recv()
                    assert ws.close_code == trio_ws.CloseCode.MESSAGE_TOO_BIG


async def test_a_flag_sets_the_limit_in_a_single_process() -> None:
    with running("--max-connections", "2", workers=1) as (port, _):
        uri = f"ws://127.0.0.1:{port}/echo?token={TOKEN}"
        with trio.fail_after(30):
            async with trio_ws.connect(uri), trio_ws.connect(uri):
                assert (await refusal(uri)).status == 503
            async with trio_ws.connect(uri) as ws:  # a place again, once they left
                await ws.send("in")
                assert await ws.recv() == "in"
            health = await refusal(f"ws://127.0.0.1:{port}/healthz")
            assert health.status == 200 and health.body == b"ok\n"


async def test_certfile_serves_wss(tmp_path: object) -> None:
    import pathlib

    import trustme

    ca = trustme.CA()
    directory = pathlib.Path(str(tmp_path))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(directory / "server.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with running("--certfile", str(directory / "server.pem"), workers=1) as (port, _):
        with trio.fail_after(30):
            async with trio_ws.connect(
                f"wss://127.0.0.1:{port}/echo?token={TOKEN}", ssl_context=client
            ) as ws:
                await ws.send("over TLS")
                assert await ws.recv() == "over TLS"


async def test_http2_flags_serve_websockets_over_http2(tmp_path: object) -> None:
    """--http2 with --certfile: ALPN offers h2; --http2-cleartext: prior knowledge too, on
    the plain port, beside HTTP/1.1."""
    import pathlib

    import trustme

    ca = trustme.CA()
    directory = pathlib.Path(str(tmp_path))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(directory / "server.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with running("--certfile", str(directory / "server.pem"), "--http2", workers=1) as (port, _):
        with trio.fail_after(30):
            uri = f"wss://127.0.0.1:{port}/echo?token={TOKEN}"
            async with trio_ws.connect(uri, ssl_context=client, http2=True) as ws:
                assert ws.response.status == 200  # RFC 8441's answer, not a 101
                await ws.send("over h2")
                assert await ws.recv() == "over h2"
    with running("--http2-cleartext", workers=2) as (port, _):
        # One after the other: the app allows one connection per worker (max_connections=1),
        # and two at once may land on the same worker.
        with trio.fail_after(30):
            uri = f"ws://127.0.0.1:{port}/echo?token={TOKEN}"
            async with trio_ws.connect(uri, http2=True) as ws:
                assert ws.response.status == 200
                await ws.send("h2c")
                assert await ws.recv() == "h2c"
            for _ in range(40):  # the worker counts the first until its handler has ended
                try:
                    async with trio_ws.connect(uri) as plain:
                        assert plain.response.status == 101
                    break
                except trio_ws.InvalidHandshake as refused:
                    assert refused.status == 503
                    await trio.sleep(0.05)
            else:
                raise AssertionError("HTTP/1.1 was refused on the h2c port")


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--max-size", "lots"], 2, "--max-size: 'lots' is not a valid value"),
        (["--compression", "gzip"], 2, "--compression: 'gzip' is not a valid value"),
        (["--keyfile", "key.pem"], 2, "--keyfile needs --certfile"),
        (["--certfile", "/no/such/file.pem"], 2, "No such file"),
        (["--max-size", "-1"], 1, "error: tests.cli_app:config: max_size must be a non-negative int"),
    ],
)
async def test_a_bad_flag_is_one_line_before_any_worker_starts(
    flags: list[str], code: int, message: str
) -> None:
    command = [sys.executable, "-m", "trio_ws", "serve", "tests.cli_app:config", "--port", "0", *flags]
    with trio.fail_after(30):
        result = await trio.run_process(
            command, cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False
        )
    err = result.stderr.decode()
    assert result.returncode == code and message in err, err
    assert "Traceback" not in err and not result.stdout
