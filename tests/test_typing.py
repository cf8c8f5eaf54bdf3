"""mypy --strict over a small example of use (tests/typing/typed_usage.py): a misspelt or
mistyped option is an error through `serve`, `open_server` and `connect`, and what users
touch (InvalidHandshake.headers, recv_streaming, reconnect) type-checks."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing

import pytest
import trio

import trio_ws
from trio_ws.config import ServeOptions

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


def test_serve_options_are_the_fields_of_server_config() -> None:
    """The TypedDict typing serve's and open_server's options lists exactly ServerConfig's
    fields but the handler, each with the same type."""
    fields = typing.get_type_hints(trio_ws.ServerConfig)
    del fields["handler"]
    assert typing.get_type_hints(ServeOptions) == fields


def test_options_shared_with_connect_have_the_same_type_and_default() -> None:
    """An option of both connect() and ServerConfig means the same on both sides."""
    opener = inspect.unwrap(trio_ws.connect)
    connect, connect_types = inspect.signature(opener).parameters, typing.get_type_hints(opener)
    fields = {field.name: field for field in dataclasses.fields(trio_ws.ServerConfig)}
    field_types = typing.get_type_hints(trio_ws.ServerConfig)
    shared = sorted(set(connect) & set(fields))
    assert len(shared) >= 10, shared
    for name in shared:
        assert connect_types[name] == field_types[name], name
        assert connect[name].default == fields[name].default, name
