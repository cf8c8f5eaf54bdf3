"""`python -m trio_ws`: the interactive client, and the chat example on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import trio
import trio.lowlevel

import trio_ws

from .conftest import ROOT, ExampleProcess, echo, ws_url


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
    assert received.decode().splitlines() == ["< first line", "< second line"]


async def test_cli_usage_is_printed_for_bad_arguments() -> None:
    proc = await trio.run_process([sys.executable, "-m", "trio_ws"], capture_stderr=True, check=False)
    assert proc.returncode == 2
    assert b"python -m trio_ws serve" in proc.stderr


async def test_workers_need_a_fixed_port() -> None:
    command = [
        sys.executable,
        "-m",
        "trio_ws",
        "serve",
        "examples.chat:router",
        "--port",
        "0",
        "--workers",
        "2",
    ]
    proc = await trio.run_process(command, cwd=ROOT, capture_stderr=True, check=False)
    assert proc.returncode != 0 and b"fixed --port" in proc.stderr


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
