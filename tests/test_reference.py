"""The API reference (mkdocs + mkdocstrings, `mkdocs.yml`): it builds in strict mode, every
name of `trio_ws.__all__` is in it with each of its parameters, every public name has a
docstring, and strict mode does fail on a broken reference or link."""

from __future__ import annotations

import enum
import html
import inspect
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import trio_ws

from .conftest import ROOT

pytestmark = pytest.mark.timeout(300)


async def build(config: Path, site: Path) -> tuple[int, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The reference page's text, built once for the module in strict mode."""
    site = tmp_path_factory.mktemp("site")
    code, output = trio.run(build, ROOT / "mkdocs.yml", site)
    assert code == 0 and "WARNING" not in output, output
    return (site / "reference" / "index.html").read_text()


def section(page: str, name: str) -> str:
    """The text of the reference for `trio_ws.<name>`, up to the next name of `__all__`."""
    start = page.index(f'id="trio_ws.{name}"')
    ends = [page.find(f'id="trio_ws.{other}"', start + 1) for other in trio_ws.__all__ if other != name]
    end = min([end for end in ends if end > start], default=len(page))
    return html.unescape(re.sub(r"<[^>]+>", " ", page[start:end]))


def parameters(obj: object) -> list[str]:
    if not callable(obj) or inspect.ismodule(obj) or (inspect.isclass(obj) and issubclass(obj, enum.Enum)):
        return []
    try:
        signature = inspect.signature(inspect.unwrap(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    return [name for name in signature.parameters if name not in ("self", "task_status")]


@pytest.mark.parametrize("name", trio_ws.__all__)
def test_every_public_name_is_in_the_reference_with_its_parameters(reference: str, name: str) -> None:
    assert f'id="trio_ws.{name}"' in reference, f"trio_ws.{name} is missing from docs/reference.md"
    text = section(reference, name)
    for parameter in parameters(getattr(trio_ws, name)):
        assert re.search(rf"\b{parameter}\b", text), f"trio_ws.{name}: parameter {parameter} is not shown"


def public_members(cls: type) -> list[tuple[str, Callable[..., object] | property]]:
    members: list[tuple[str, Callable[..., object] | property]] = []
    for name, value in vars(cls).items():
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
            members.append((name, value))
    return members


@pytest.mark.parametrize("name", [name for name in trio_ws.__all__ if name not in ("__version__", "Message")])
def test_every_public_name_and_method_has_a_docstring(name: str) -> None:
    obj = getattr(trio_ws, name)
    assert (obj.__doc__ or "").strip(), f"trio_ws.{name} has no docstring"
    if inspect.isclass(obj) and not issubclass(obj, enum.Enum):
        undocumented = [member for member, value in public_members(obj) if not (value.__doc__ or "").strip()]
        assert not undocumented, f"trio_ws.{name}: no docstring on {', '.join(undocumented)}"


def test_values_are_documented_too(reference: str) -> None:
    assert "The version of trio_ws" in section(reference, "__version__")
    assert "a text message" in section(reference, "Message")


@pytest.mark.parametrize(
    ("breakage", "complaint"),
    [
        ("\n::: trio_ws.no_such_name\n", "no_such_name"),
        ("\nSee [the guide](no-such-page.md).\n", "no-such-page.md"),
    ],
)
async def test_strict_mode_fails_on_a_broken_reference(tmp_path: Path, breakage: str, complaint: str) -> None:
    """The guard itself: a copy of the docs with one broken reference does not build."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "trio_ws").symlink_to(ROOT / "trio_ws")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    with (tmp_path / "docs" / "reference.md").open("a") as page:
        page.write(breakage)
    code, output = await build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert code != 0 and complaint in output, output


#: How the guide names an object in code: `ws.recv()`, `server.connections`, `CloseCode.X`...
PREFIXES = {
    "ws": "WebSocket",
    "server": "WebSocketServer",
    "sub": "Subscription",
    "subscription": "Subscription",
    "connections": "Connections",
    "backend": "RedisBackend",
    "hub": "Hub",
    "CloseCode": "CloseCode",
    "State": "State",
    "ServerConfig": "ServerConfig",
    "ClientConfig": "ClientConfig",
    "HubConfig": "HubConfig",
    "Request": "Request",
    "Response": "Response",
    "Publication": "Publication",
    "StreamPosition": "StreamPosition",
}
PAGES = ["guide.md", "client.md", "hub.md", "deploy.md", "faq.md", "index.md"]


def mentioned(text: str) -> set[tuple[str, str]]:
    """(class, attribute) for every `prefix.attribute` at the start of a code span."""
    found = set()
    for prefix, attribute in re.findall(r"`(?:trio_ws\.)?(\w+)\.(\w+)", text):
        if prefix in PREFIXES and not attribute.startswith("_"):
            found.add((PREFIXES[prefix], attribute))
    return found


def missing_from(reference: str, text: str) -> list[str]:
    names = (f"{cls}.{attr}" for cls, attr in mentioned(text))
    return sorted(name for name in names if f'id="trio_ws.{name}"' not in reference)


def test_every_attribute_method_and_member_the_docs_name_is_in_the_reference(reference: str) -> None:
    for page in PAGES:
        text = (ROOT / "docs" / page).read_text()
        assert mentioned(text) or page in ("index.md", "faq.md")
        assert not missing_from(reference, text), f"docs/{page} names what the reference lacks"


def test_the_reference_check_fails_on_a_planted_name(reference: str) -> None:
    planted = "Read `ws.remote_address`, then `ws.no_such_attribute` and `CloseCode.NO_SUCH_CODE`."
    assert missing_from(reference, planted) == ["CloseCode.NO_SUCH_CODE", "WebSocket.no_such_attribute"]


@pytest.mark.parametrize("enum_class", [trio_ws.CloseCode, trio_ws.State])
def test_every_enum_member_is_in_the_reference(reference: str, enum_class: type[enum.Enum]) -> None:
    for member in enum_class:
        assert f'id="trio_ws.{enum_class.__name__}.{member.name}"' in reference


@pytest.mark.parametrize("name", ["reconnect", "broadcast"])
def test_a_function_is_not_shadowed_by_a_module_of_its_name(reference: str, name: str) -> None:
    """`trio_ws.reconnect` is the function, in the code and in the reference (a module of
    the same name made the reference show the module, and `Connections` twice)."""
    assert inspect.isfunction(getattr(trio_ws, name))
    text = section(reference, name)
    assert "module" not in text.split()[:3], text[:200]
    assert reference.count('id="trio_ws.Connections"') == 1


@pytest.mark.parametrize("name", ["connect", "open_server", "reconnect", "open_hub", "Hub.subscribe"])
def test_an_async_context_manager_is_shown_as_one(reference: str, name: str) -> None:
    """Not as `async connect(...) -> AsyncIterator[WebSocket]`, the generator it is written as."""
    start = reference.index(f'id="trio_ws.{name}"')
    text = "".join(html.unescape(re.sub(r"<[^>]+>", "", reference[start : start + 6000])).split())
    short = name.rpartition(".")[2]
    assert f"async{short}(" not in text and "->AsyncIterator[" not in text
    assert re.search(r"->AbstractAsyncContextManager\[\w+\]", text), text[:300]
