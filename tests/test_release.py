"""What a release ships: the sdist and the wheel build, carry the license, the C extension,
the demo page and the type marker, and the wheel installed in a fresh virtual environment
(not this checkout) runs the demo and an echo server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest
import trio

import trio_ws

from .conftest import ROOT, free_port, readline_within

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the sdist, the wheel), built from this checkout as `python -m build` does."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def installed(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtual environment with the wheel installed (and its
    dependencies, from the package index)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(built[1])], check=True, capture_output=True
    )
    return venv / "bin" / "python"


def test_the_wheel_carries_the_license_the_extension_the_page_and_the_type_marker(
    built: tuple[Path, Path],
) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
    for wanted in ("trio_ws/demo.html", "trio_ws/py.typed", "trio_ws/_speedups.c"):
        assert wanted in names, wanted
    assert any(name.startswith("trio_ws/_speedups.") and name.endswith(".so") for name in names)
    assert any(name.endswith("licenses/LICENSE") for name in names)
    assert "License-Expression: MIT" in metadata and "Classifier: Framework :: Trio" in metadata


def test_the_sdist_carries_what_a_build_needs(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[0]) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    for wanted in (
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "setup.py",
        "trio_ws/_speedups.c",
        "trio_ws/demo.html",
    ):
        assert wanted in names, wanted


def test_the_installed_wheel_is_what_runs_with_its_c_extension(installed: Path, tmp_path: Path) -> None:
    probe = "import trio_ws, trio_ws._speedups; print(trio_ws.__file__, trio_ws.__version__)"
    result = subprocess.run(
        [str(installed), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    location, version = result.stdout.split()
    assert location.startswith(str(installed.parent.parent)) and version == trio_ws.__version__


async def test_the_installed_wheel_runs_the_demo_and_an_echo_server(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [str(installed), "-m", "trio_ws", "demo", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        assert "chat demo on" in readline_within(demo.stdout, 30)
        assert "listening on" in readline_within(demo.stdout, 30)
        page = await trio.to_thread.run_sync(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/").read()
        )
        assert b"<html" in page.lower()
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "join", "room": "wheel", "name": "tester"}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            demo.send_signal(signal.SIGTERM)
            with pytest.raises(trio_ws.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.code == 1012  # the demo moves its pages as it drains
        assert await trio.to_thread.run_sync(demo.wait, 20) == 0
    finally:
        demo.kill()
        demo.communicate()
    (tmp_path / "echo.py").write_text((ROOT / "examples" / "echo.py").read_text())
    echo = subprocess.Popen(
        [str(installed), str(tmp_path / "echo.py"), "--port", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    try:
        assert echo.stdout is not None
        url = readline_within(echo.stdout, 30).split()[-1]
        async with trio_ws.connect(url) as ws:
            await ws.send("from the wheel")
            assert await ws.recv() == "from the wheel"
    finally:
        echo.kill()
        echo.communicate()
