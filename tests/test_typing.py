"""mypy --strict over a small example of use (tests/typing/typed_usage.py): a misspelt or
mistyped option is an error through `serve`, `open_server` and `connect`, and what users
touch (InvalidHandshake.headers, recv_streaming, reconnect) type-checks."""

from __future__ import annotations

import inspect
import re
import sys

import pytest
import trio

import trio_ws
from trio_ws.server import ServeOptions

from .conftest import ROOT

pytestmark = pytest.mark.timeout(300)
EXAMPLE = ROOT / "tests" / "typing" / "typed_usage.py"


async def test_mypy_flags_exactly_the_marked_lines() -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(EXAMPLE)],
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    report = result.stdout.decode()
    flagged = {int(n) for n in re.findall(rf"{re.escape(EXAMPLE.name)}:(\d+): error", report)}
    marked = {n for n, line in enumerate(EXAMPLE.read_text().splitlines(), 1) if line.endswith("# error")}
    assert marked and flagged == marked, report


def test_serve_options_match_serve() -> None:
    """The TypedDict that types open_server's options lists exactly serve's keyword options."""
    keywords = {
        name
        for name, parameter in inspect.signature(trio_ws.serve).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "task_status"
    }
    assert set(ServeOptions.__annotations__) == keywords
