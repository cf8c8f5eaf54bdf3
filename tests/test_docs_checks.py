"""The docs stay true to the code: every signature the pages show (a call with `*` or
`**options` in it) names real parameters with their real defaults, every test that
docs/reliability.md cites exists, and the systemd unit of docs/deploy.md verifies. Each
check is also shown failing on a planted mismatch."""

from __future__ import annotations

import ast
import inspect
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import trio_ws

from .conftest import ROOT

PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def callables() -> dict[str, Callable[..., Any]]:
    """What a page may show the signature of: the public names, and the hub's methods."""
    found = {name: getattr(trio_ws, name) for name in trio_ws.__all__ if callable(getattr(trio_ws, name))}
    found["hub.subscribe"] = trio_ws.Hub.subscribe
    found["hub.open_channel"] = trio_ws.Hub.open_channel
    found["server.drain"] = trio_ws.WebSocketServer.drain
    found["server.aclose"] = trio_ws.WebSocketServer.aclose
    return found


def split_arguments(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes."""
    parts, depth, current, quote = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def shown_signatures(text: str) -> list[tuple[str, list[str]]]:
    """(name, arguments) of every call shown as a signature: one with a bare `*` or `**`."""
    found = []
    for name in callables():
        for match in re.finditer(rf"(?<![\w.]){re.escape(name)}\(", text):
            depth, end = 1, match.end()
            while end < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            arguments = split_arguments(" ".join(text[match.end() : end - 1].split()))
            if any(
                a == "*" or a.startswith("**") or (a.startswith("*") and a[1:].isidentifier())
                for a in arguments
            ):
                found.append((name, arguments))
    return found


def default_of(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return eval(text, {"__builtins__": {}}, {})  # 2**20 and the like


def problems(text: str) -> list[str]:
    """What a page's signatures get wrong: unknown parameters, wrong defaults."""
    found = []
    for name, arguments in shown_signatures(text):
        signature = inspect.signature(inspect.unwrap(callables()[name]))
        parameters = {n: p for n, p in signature.parameters.items() if n != "self"}
        for argument in arguments:
            if argument in ("*", "...", "…") or argument.startswith("*"):
                continue
            parameter, _, default = argument.partition("=")
            parameter = parameter.split(":")[0].strip()
            if parameter not in parameters:
                found.append(f"{name}(): no parameter {parameter!r}")
            elif default:
                try:
                    shown = default_of(default.strip())
                except Exception:
                    continue  # not a literal (a name, a call): nothing to compare
                actual = parameters[parameter].default
                if actual is inspect.Parameter.empty or shown != actual:
                    found.append(f"{name}(): {parameter} defaults to {actual!r}, not {default.strip()}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_signature_a_page_shows_matches_the_code(page: Any) -> None:
    assert not problems(page.read_text())


def test_the_pages_do_show_signatures() -> None:
    names = {name for page in PAGES for name, _ in shown_signatures(page.read_text())}
    assert {"reconnect", "RedisBackend", "hub.subscribe", "serve"} <= names, names


@pytest.mark.parametrize(
    ("planted", "complaint"),
    [
        ("`reconnect(uri, config=None, *, initial_delay=2.0)`", "initial_delay defaults to 1.0"),
        ("`RedisBackend(url, *, max_in_fligth=4096)`", "no parameter 'max_in_fligth'"),
        ("`hub.subscribe(ws, *topics, queue_size=64)`", "queue_size defaults to None"),
    ],
)
def test_the_signature_check_fails_on_a_planted_mismatch(planted: str, complaint: str) -> None:
    assert any(complaint in problem for problem in problems(planted)), problems(planted)


def defined_tests() -> set[str]:
    """Every test function (or state machine's TestCase) and every test module's name."""
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.add(path.stem)
        names |= set(re.findall(r"^\s*(?:async )?def (test_\w+)|^(test_\w+) = ", path.read_text(), re.M))
    return {name for pair in names for name in (pair if isinstance(pair, tuple) else (pair,)) if name}


def cited_tests(text: str) -> set[str]:
    return set(re.findall(r"\b(test_\w+)", text))


def test_every_test_the_reliability_page_cites_exists() -> None:
    cited = cited_tests((ROOT / "docs" / "reliability.md").read_text())
    assert len(cited) > 10
    assert not cited - defined_tests()


def test_the_citation_check_fails_on_a_planted_name() -> None:
    planted = "shown by `test_a_publish_cancelled_before_redis_answered_is_counted`"
    assert cited_tests(planted) - defined_tests() == {
        "test_a_publish_cancelled_before_redis_answered_is_counted"
    }


def documented_unit() -> str:
    """The systemd unit of docs/deploy.md, its paths pointed at this machine's."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    (unit,) = re.findall(r"```ini\n(.*?)```", text, re.S)
    unit = unit.replace("/srv/app/.venv/bin/python", sys.executable).replace("/srv/app", str(ROOT))
    return unit.replace("User=www-data", f"User={pwd.getpwuid(os.getuid()).pw_name}")


def verify_unit(unit: str, directory: Path) -> tuple[int, str]:
    path = directory / "trio-ws-app.service"
    path.write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@systemd
def test_the_documented_systemd_unit_verifies(tmp_path: Path) -> None:
    code, output = verify_unit(documented_unit(), tmp_path)
    assert code == 0 and "trio-ws-app.service:" not in output, output


@systemd
@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("ExecReload=", "ExecRelaod="), "Unknown key"),
        (("ExecStart=" + sys.executable, "ExecStart=python"), ""),
    ],
)
def test_the_unit_check_fails_on_a_planted_mistake(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    code, output = verify_unit(documented_unit().replace(*change), tmp_path)
    assert code != 0 or "trio-ws-app.service:" in output, output
    assert complaint in output
