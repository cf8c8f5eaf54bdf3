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
from trio_ws.config import ConnectOptions, ServeOptions

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


def test_connect_options_are_the_fields_of_client_config() -> None:
    assert typing.get_type_hints(ConnectOptions) == typing.get_type_hints(trio_ws.ClientConfig)


def test_each_option_shared_by_server_and_client_is_defined_once() -> None:
    """Both configurations take the shared options from ConnectionOptions: the same
    field, type, default and documentation; neither redefines one."""
    shared = {field.name: field for field in dataclasses.fields(trio_ws.ConnectionOptions)}
    assert len(shared) >= 12, sorted(shared)
    for config in (trio_ws.ServerConfig, trio_ws.ClientConfig):
        assert issubclass(config, trio_ws.ConnectionOptions)
        fields = {field.name: field for field in dataclasses.fields(config)}
        own = set(inspect.get_annotations(config))
        assert not own & set(shared), f"{config.__name__} redefines {sorted(own & set(shared))}"
        for name, field in shared.items():
            assert (fields[name].type, fields[name].default) == (field.type, field.default), name
    assert trio_ws.ServerConfig(handler=wait).server_header == trio_ws.ClientConfig().user_agent_header


async def wait(ws: trio_ws.WebSocket) -> None:
    await ws.wait_closed()


def test_connect_takes_a_config_and_keywords() -> None:
    """connect(uri, config, **options): the options are ClientConfig's, nothing else."""
    parameters = inspect.signature(inspect.unwrap(trio_ws.connect)).parameters
    assert [(p.name, p.kind) for p in parameters.values()] == [
        ("uri", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("config", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("options", inspect.Parameter.VAR_KEYWORD),
    ]


async def test_mypy_strict_finds_trio_ws_from_a_users_own_directory(tmp_path: typing.Any) -> None:
    """A user's app outside this checkout, checked with the mypy of the environment the
    README's command installed into: trio_ws and its types are found (setuptools' default
    editable install would hide them behind an import hook)."""
    readme = (ROOT / "README.md").read_text()
    assert "editable_mode=compat" in readme.split("```")[1]  # the README's install is the one tested
    app = tmp_path / "user_app.py"
    app.write_text(
        "import trio_ws\n\n"
        "async def handler(ws: trio_ws.WebSocket) -> None:\n"
        "    async for message in ws:\n"
        "        await ws.send(message)\n\n"
        "config = trio_ws.ServerConfig(handler=handler, hub=trio_ws.HubConfig(history_size=10))\n"
    )
    result = await trio.run_process(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(app)],
        cwd=tmp_path,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode()
