"""`python -m trio_ws`: the interactive client, and the chat example on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import trio

import trio_ws

from .conftest import ROOT, ExampleProcess, echo, ws_url


async def test_interactive_client_sends_lines_and_prints_replies() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        proc = await trio.run_process(
            [sys.executable, "-m", "trio_ws", ws_url(server)],
            stdin=b"first line\nsecond line\n",
            capture_stdout=True,
            capture_stderr=True,
        )
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["< first line", "< second line"]


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
