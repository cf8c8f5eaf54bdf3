"""The package's seams, read from its source: no import cycle between its modules (deferred
and TYPE_CHECKING imports included: a cycle is a design fault however it is hidden), and no
module using another module's underscore names, imported or reached through an object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "trio_ws"
#: Private modules that belong to one other module: the C accelerator of frames.py.
OWNED = {"trio_ws._speedups": "trio_ws.frames"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in SOURCES.items()}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of what `from ... import` names, from `module`."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    if SOURCES[module].name != "__init__.py":
        package.pop()
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in `module`'s tree."""
    found = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.ImportFrom):
            target = resolve(module, node)
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in SOURCES:  # `from . import testing` imports a module
                    found.append((submodule, [], node.lineno))
                else:
                    found.append((target, [alias.name], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
    return [(target, names, line) for target, names, line in found if target in SOURCES]


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in SOURCES}
    for module in SOURCES:
        for target, _, _ in imports(module):
            # A package's __init__ re-exports its modules; importing `trio_ws` from inside
            # it would be a cycle through the face, and is one like any other.
            if target != module:
                edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles() -> None:
    edges = graph()
    # The package face imports everything, and nothing may import the face back.
    importers_of_face = sorted(module for module, targets in edges.items() if "trio_ws" in targets)
    assert not importers_of_face, f"modules importing the package face trio_ws: {importers_of_face}"
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(group) for group in found)


def private_names_defined(module: str) -> set[str]:
    """The underscore names `module` defines: functions, classes, attributes set on self,
    class-level names."""
    names = set()
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def foreign_private_uses(module: str, defined_by: dict[str, set[str]]) -> list[str]:
    mine = defined_by[module]
    others = set().union(*(names for name, names in defined_by.items() if name != module))
    uses = []
    for target, names, line in imports(module):
        if target.split(".")[-1].startswith("_") and OWNED.get(target) != module:
            uses.append(f"{module}:{line} imports the private module {target}")
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        uses += [f"{module}:{line} imports {target}.{name}" for name in private]
    for node in ast.walk(TREES[module]):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in mine
            and node.attr in others
        ):
            uses.append(f"{module}:{node.lineno} uses .{node.attr}, which another module defines")
    return uses


def test_no_module_uses_another_modules_underscore_names() -> None:
    defined_by = {module: private_names_defined(module) for module in SOURCES}
    uses = [use for module in SOURCES for use in foreign_private_uses(module, defined_by)]
    assert not uses, "\n".join(uses)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_the_hub_and_its_delivery_modes_reach_subscriptions_only_through_public_methods() -> None:
    """hub.py and delivery.py drive `Subscription` (subscription.py) through its public
    methods: neither touches an underscore attribute of anything but `self`, and neither
    defines what subscription.py defines."""
    for module in ("trio_ws.hub", "trio_ws.delivery"):
        uses = [
            f"{module}:{node.lineno} .{node.attr}"
            for node in ast.walk(TREES[module])
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ]
        assert not uses, f"private attributes reached on other objects: {uses}"
    subscription_names = private_names_defined("trio_ws.subscription")
    assert "_go_live" in subscription_names and "_held" in subscription_names  # the test sees them
    for module in ("trio_ws.hub", "trio_ws.delivery"):
        reached = {
            node.attr for node in ast.walk(TREES[module]) if isinstance(node, ast.Attribute)
        } & subscription_names
        assert not reached, f"{module} reaches Subscription's private names: {sorted(reached)}"


#: The sans-I/O core: bytes and events in and out, no I/O library under it.
SANS_IO = [
    "trio_ws.frames",
    "trio_ws.assembler",
    "trio_ws.protocol",
    "trio_ws.handshake",
    "trio_ws.http",
    "trio_ws.messages",
    "trio_ws.extensions.permessage_deflate",
]


def third_party_imports(module: str) -> set[str]:
    """Top-level names of what `module` imports from outside the package."""
    found = set()
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
    return found


@pytest.mark.parametrize("module", SANS_IO)
def test_the_sans_io_core_never_imports_trio(module: str) -> None:
    """Neither the module nor anything of the package it imports, however deep, imports trio
    (or a socket): the core runs under any I/O layer, as h11 and wsproto do."""
    edges = graph()
    reached, todo = {module}, [module]
    while todo:
        for target in edges[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    io = {name: third_party_imports(name) & {"trio", "socket", "asyncio", "selectors"} for name in reached}
    assert not {name: found for name, found in io.items() if found}
