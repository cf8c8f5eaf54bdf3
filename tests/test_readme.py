"""The README's two set-up commands work from a fresh clone, in a fresh virtual environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_ws

from .conftest import ROOT

pytestmark = pytest.mark.timeout(1500)  # fresh clones install everything into new venvs


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```sh") + 1
    return lines[start : lines.index("```", start)]


def test_readme_starts_with_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0].startswith("# ") and lines[2] == "```sh"
    demo, tests = readme_commands()
    assert demo.endswith("python -m trio_ws demo")
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path_factory.mktemp("clone") / "trio_ws"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def run_in_shell(command: str, cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        ["bash", "-c", command], cwd=cwd, env={**env, **kwargs}, text=True,  # type: ignore[dict-item]
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


async def line_with(proc: subprocess.Popen[str], marker: str, what: str) -> str:
    """The first line of `proc`'s output that holds `marker`; fails if it exits first."""
    assert proc.stdout is not None
    seen = []
    while marker not in (line := await trio.to_thread.run_sync(proc.stdout.readline)):
        assert line, f"{what} exited: {''.join(seen)}"
        seen.append(line)
    return line


async def test_demo_command_serves_from_a_fresh_clone(fresh_clone: Path) -> None:
    demo = readme_commands()[0] + " --port 0"
    proc = run_in_shell(demo, fresh_clone)
    try:
        with trio.fail_after(300):  # the install comes first
            line = await line_with(proc, "chat demo on http://", "the demo")
        address = line.split("http://", 1)[1].split("/", 1)[0]
        async with trio_ws.connect(f"ws://{address}/ws") as ws:
            await ws.send(json.dumps({"type": "join", "room": "readme", "name": "tester"}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "message", "text": "from the README"}))
            while (event := json.loads(await ws.recv()))["type"] != "message":
                pass
            assert event["text"] == "from the README"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_test_command_installs_and_runs_from_a_fresh_clone(fresh_clone: Path) -> None:
    # The command exactly as written; PYTEST_ADDOPTS only narrows which tests it runs,
    # so that the suite does not run itself recursively.
    proc = run_in_shell(readme_commands()[1], fresh_clone, PYTEST_ADDOPTS="-q tests/test_frames.py")
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    assert " passed" in output
    assert sys.executable not in output  # it used its own virtual environment


def docs_command() -> str:
    """The one command of the README's "Docs" section."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```sh", lines.index("## Docs")) + 1
    (command,) = lines[start : lines.index("```", start)]
    return command


async def test_docs_command_serves_the_reference_from_a_fresh_clone(fresh_clone: Path) -> None:
    from .conftest import free_port

    port = free_port()
    assert docs_command().endswith("mkdocs serve")
    proc = run_in_shell(f"{docs_command()} -a 127.0.0.1:{port}", fresh_clone)
    try:
        with trio.fail_after(300):  # the install comes first
            await line_with(proc, "Serving on http://", "mkdocs serve")
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"GET /reference/ HTTP/1.0\r\nHost: x\r\n\r\n")
            page = b""
            while chunk := await stream.receive_some():
                page += chunk
        assert page.startswith(b"HTTP/1.0 200") and b'id="trio_ws.ServerConfig"' in page, page[:300]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
