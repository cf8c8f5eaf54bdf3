"""`python -m trio_ws`: the interactive client, and the chat example on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import trio
import trio.lowlevel

import trio_ws

from .conftest import ROOT, ExampleProcess, echo, readline_within, ws_url


async def test_interactive_client_sends_lines_and_prints_replies() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "trio_ws", ws_url(server)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        received = b""
        try:
            with trio.fail_after(20):
                # One line at a time, each reply awaited: a line sent together with the close
                # that end of input starts may rightly go unanswered by the server.
                for line in ("first line", "second line"):
                    await proc.stdin.send_all(f"{line}\n".encode())
                    while f"< {line}\n".encode() not in received:
                        chunk = await proc.stdout.receive_some()
                        assert chunk, f"the client exited early; it printed {received!r}"
                        received += chunk
                await proc.stdin.aclose()  # end of input closes the connection
                while chunk := await proc.stdout.receive_some():
                    received += chunk
                assert await proc.wait() == 0
        finally:
            proc.kill()
    expected = ["< first line", "< second line", "connection closed: code = 1000 (normal closure)"]
    assert received.decode().splitlines() == expected


async def test_cli_usage_is_printed_for_bad_arguments() -> None:
    proc = await trio.run_process([sys.executable, "-m", "trio_ws"], capture_stderr=True, check=False)
    assert proc.returncode == 2
    assert b"{connect,serve,demo}" in proc.stderr


async def test_help_goes_to_stdout_lists_every_command_and_exits_0() -> None:
    code, out, err = await run_client("--help")
    assert code == 0 and err == ""
    for command in ("connect", "serve", "demo"):
        assert f"    {command} " in out, out
    for sub in ("connect", "serve", "demo"):
        code, out, _ = await run_client(sub, "--help")
        assert code == 0 and out.startswith(f"usage: python -m trio_ws {sub}")


async def test_client_errors_are_one_line_with_a_non_zero_exit() -> None:
    def refuse(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(401, {}, "a token is needed\n")

    async with trio_ws.open_server(echo, "127.0.0.1", 0, process_request=refuse) as server:
        refused = await run_client(ws_url(server), "--batch")
    unreachable = await run_client("ws://127.0.0.1:1/", "--batch")
    bad_uri = await run_client("connect", "ws://[::1/", "--batch")
    for (code, _, err), expected in [
        (refused, "HTTP 401: a token is needed"),
        (unreachable, "127.0.0.1:1"),
        (bad_uri, "not a valid URI"),
    ]:
        assert code == 1, err
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


async def test_serve_refuses_a_target_that_cannot_run() -> None:
    for target, found in [("trio_ws.backends.redis:logger", "Logger"), ("json:dumps", "function")]:
        code, _, err = await run_client("serve", target, "--port", "0")
        assert code == 1 and f"error: {target} is {found}" in err and "not a handler" in err, err
        assert "Traceback" not in err
    code, _, err = await run_client("serve", "no_such_module:app", "--port", "0")
    assert code == 1 and "cannot load no_such_module:app" in err


def serve_chat(port: str, *extra: str) -> list[str]:
    """`python -m trio_ws serve examples.chat:router --port PORT ...`."""
    return [sys.executable, "-m", "trio_ws", "serve", "examples.chat:router", "--port", port, *extra]


async def test_workers_without_redis_warn_that_hub_topics_stay_per_process() -> None:
    from .conftest import free_port

    proc = subprocess.Popen(
        serve_chat(str(free_port()), "--workers", "2"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        line = readline_within(proc.stderr, 30)
        for _ in range(2):  # and both workers start all the same
            assert "listening on" in readline_within(proc.stdout, 30)
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
    assert "--workers 2 without --redis" in line and "only the clients of the process" in line
    assert proc.returncode == 0, rest


async def test_workers_on_port_0_share_the_one_port_the_supervisor_bound() -> None:
    """The supervisor opens the socket and the workers inherit it, so port 0 works: every
    worker and the ready line name the same port, and it answers."""
    proc = subprocess.Popen(
        serve_chat("0", "--workers", "2"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [readline_within(proc.stdout, 30) for _ in range(3)]
        ports = {line.split("ws://127.0.0.1:")[1].split("/")[0] for line in lines}
        assert len(ports) == 1 and "0" not in ports, lines
        assert "2 workers ready" in lines[2], lines
        async with trio_ws.connect(f"ws://127.0.0.1:{ports.pop()}/chat/x?name=a") as ws:
            assert ws.state is trio_ws.State.OPEN
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


async def test_chat_example_alone() -> None:
    chat = ExampleProcess("chat.py", "--port", "0")
    try:
        base = chat.url.replace("/chat/ROOM?name=NAME", "")
        async with (
            trio_ws.connect(f"{base}/chat/lobby?name=ann") as ann,
            trio_ws.connect(f"{base}/chat/lobby?name=bob") as bob,
        ):
            assert json.loads(str(await ann.recv()))["type"] == "welcome"
            assert json.loads(str(await bob.recv()))["type"] == "welcome"
            await ann.send("hi bob")
            seen = []
            with trio.fail_after(5):
                while not seen or seen[-1]["type"] != "message":
                    seen.append(json.loads(str(await bob.recv())))
            assert seen[-1] == {"type": "message", "room": "lobby", "name": "ann", "text": "hi bob"}
            assert {"type": "join", "room": "lobby", "name": "bob"} in seen
    finally:
        chat.stop()


def test_chat_module_imports_as_a_cli_target() -> None:
    code = "from trio_ws.cli import load_target; print(load_target('examples.chat:router'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "Router" in proc.stdout


async def run_client(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    import os

    result = await trio.run_process(
        [sys.executable, "-m", "trio_ws", *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def run_client_keeping_stdin_open(*args: str, line: bytes) -> tuple[int, str]:
    """Run the interactive client, type `line`, and never end its input: only the server ends it.

    End of input closes with 1000 and could overtake the server's own close.
    """
    import subprocess

    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.send_all(line)
    out = b""
    while chunk := await process.stdout.receive_some():
        out += chunk
    code = await process.wait()
    await process.stdin.aclose()
    return code, out.decode()


async def test_batch_mode_sends_lines_prints_replies_and_exits_0() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        with trio.fail_after(30):
            code, out, err = await run_client(ws_url(server), "--batch", stdin=b"one\ntwo\nthree\n")
    assert (code, out) == (0, "one\ntwo\nthree\n"), err


async def test_batch_mode_exit_codes_say_how_it_ended() -> None:
    async def refuse(ws: trio_ws.WebSocket) -> None:
        await ws.recv()
        await ws.close(4000, "go away")

    async with trio_ws.open_server(refuse, "127.0.0.1", 0) as server:
        with trio.fail_after(30):
            code, _, err = await run_client(ws_url(server), "--batch", stdin=b"hello\n")
    assert code == 3 and "4000" in err
    code, _, err = await run_client("ws://127.0.0.1:1/", "--batch")
    assert code == 1 and err.startswith("error: ")


async def test_the_client_says_how_the_connection_ended_even_when_it_ended_well() -> None:
    """A 1001 ends `async for` quietly; the CLI still prints the code and the reason."""

    async def restart(ws: trio_ws.WebSocket) -> None:
        await ws.recv()
        await ws.close(1001, "server restarting")

    async with trio_ws.open_server(restart, "127.0.0.1", 0) as server:
        with trio.fail_after(30):
            code, out = await run_client_keeping_stdin_open(ws_url(server), line=b"hello\n")
            assert code == 0 and "connection closed: code = 1001 (going away): server restarting" in out, out
            code, out, err = await run_client(ws_url(server), "--batch", stdin=b"hello\n")
            assert (code, out) == (
                0,
                "",
            ) and err.strip() == "connection closed: code = 1001 (going away): server restarting"
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        with trio.fail_after(30):  # the client closing at end of input says so too
            code, out, _ = await run_client(ws_url(server), stdin=b"hi\n")
    assert code == 0 and out.splitlines()[-1] == "connection closed: code = 1000 (normal closure)", out


async def test_headers_subprotocols_and_proxy_from_the_command_line() -> None:
    from .proxies import microsocks

    async def describe(ws: trio_ws.WebSocket) -> None:
        await ws.send(f"{ws.request_headers.get('X-Token')} {ws.subprotocol} {ws.remote_address[1]}")
        await ws.wait_closed()

    proxy = microsocks()
    try:
        async with trio_ws.open_server(describe, "127.0.0.1", 0, subprotocols=["v2"]) as server:
            args = [
                ws_url(server),
                "--batch",
                "--header",
                "X-Token: abc",
                "--subprotocol",
                "v1",
                "--subprotocol",
                "v2",
            ]
            with trio.fail_after(30):
                code, out, err = await run_client(*args, "--proxy", proxy.url)
            assert code == 0, err
            assert out.split()[:2] == ["abc", "v2"]
            with trio.fail_after(30):
                code, out, err = await run_client(*args, "--proxy", "none")
            assert code == 0, err
            code, _, err = await run_client(ws_url(server), "--header", "no colon")
            assert code == 2 and "Name: value" in err
    finally:
        proxy.stop()


async def test_interactive_ping_and_close_commands() -> None:
    closes = []

    async def record(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()
        closes.append((ws.close_code, ws.close_reason))

    async with trio_ws.open_server(record, "127.0.0.1", 0) as server:
        with trio.fail_after(30):
            code, out, _ = await run_client(ws_url(server), stdin=b"/ping\n/close 4001 see you\n")
            while not closes:
                await trio.sleep(0.01)
    assert out.startswith("pong in ") and " ms" in out.splitlines()[0]
    assert closes == [(4001, "see you")] and code == 3


async def test_insecure_skips_certificate_checks_with_a_warning() -> None:
    import ssl

    import trustme

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=context) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        with trio.fail_after(30):
            code, _, err = await run_client(uri, "--batch", stdin=b"x\n")
            assert code == 1 and "failed to verify" in err
            code, out, err = await run_client(uri, "--batch", "--insecure", stdin=b"x\n")
    assert (code, out) == (0, "x\n") and "not checked" in err


def test_sigterm_right_after_start_leaves_no_worker_behind() -> None:
    """A SIGTERM while the runner is starting its workers (right after its warning line, or
    a few ms later, between two workers' starts) stops them all: none is left running,
    orphaned or never told to stop, holding the port and the pipes (communicate() returns
    once every process that shares the pipes has exited). A worker started after the signal
    was handled was once never stopped: a CI run under load caught it."""
    import time

    from .conftest import free_port

    for attempt, delay in enumerate([0.0, 0.004, 0.008, 0.01, 0.012, 0.014, 0.016, 0.02, 0.01, 0.012]):
        proc = subprocess.Popen(
            serve_chat(str(free_port()), "--workers", "4"),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stderr is not None
        assert "without --redis" in readline_within(proc.stderr, 30)  # logged just before starting them
        time.sleep(delay)
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"a worker outlived the runner (attempt {attempt}, {delay} s)") from None


async def test_batch_output_into_a_closed_pipe_ends_quietly(echo_server: trio_ws.WebSocketServer) -> None:
    """`python -m trio_ws URI --batch | head -1`: once head has its line and closes the pipe,
    the client ends with exit code 0 and no traceback (it was an ExceptionGroup holding a
    BrokenPipeError)."""
    import os

    read_end, write_end = os.pipe()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", ws_url(echo_server), "--batch"],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    assert process.stdin is not None and process.stderr is not None
    async with trio.lowlevel.FdStream(read_end) as head:
        await process.stdin.send_all(b"".join(b"line %d\n" % n for n in range(200)))
        with trio.fail_after(10):
            assert (await head.receive_some(8)).startswith(b"line 0")
    # head has closed its end: what the client prints next fails with EPIPE
    await process.stdin.send_all(b"".join(b"more %d\n" % n for n in range(2000)))
    await process.stdin.aclose()
    with trio.fail_after(10):
        errors = b""
        async for chunk in process.stderr:
            errors += chunk
        code = await process.wait()
    assert code == 0 and b"Traceback" not in errors, errors.decode()


async def test_serve_help_shows_every_flags_default() -> None:
    from trio_ws.cli import SERVE_FLAGS

    result = await trio.run_process(
        [sys.executable, "-m", "trio_ws", "serve", "--help"], capture_stdout=True, check=True
    )
    text = " ".join(result.stdout.decode().split()).split(" options:", 1)[1]  # past the usage line
    flags = [flag.flag for flag in SERVE_FLAGS] + [
        "--port",
        "--host",
        "--workers",
        "--history-size",
        "--log-level",
    ]
    for flag in flags:
        described = text.split(f"{flag} ", 1)[1].split(" --", 1)[0]
        assert "default:" in described, (flag, described)
