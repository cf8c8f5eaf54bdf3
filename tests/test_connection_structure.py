"""The connection's shape, read from its source: every protocol call goes through the one
choke point, each connection option is defined once, one factory builds connections, and
`WebSocket` stays small enough to read in one sitting."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing

import pytest

import trio_ws
from trio_ws.config import ClientConfig, ServerConfig
from trio_ws.connection import WebSocket
from trio_ws.options import ConnectionOptions
from trio_ws.protocol import Protocol

from .conftest import ROOT

CONNECTION_MODULES = ("connection.py", "connection_core.py")
PROTOCOL_METHODS = frozenset(
    name for name, member in vars(Protocol).items() if inspect.isfunction(member) and not name.startswith("_")
)
SANS_IO = frozenset({"protocol.py", "frames.py", "handshake.py", "http.py", "uri.py"})
OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(ConnectionOptions))


def tree(name: str) -> ast.Module:
    return ast.parse((ROOT / "trio_ws" / name).read_text())


def parents(module: ast.Module) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(module) for child in ast.iter_child_nodes(node)}


def in_choke_point(node: ast.AST, parent: dict[ast.AST, ast.AST]) -> bool:
    """Whether `node` is inside `with <core>.call(...) as <name>:`, or is the choke point's
    own way out (`__exit__`, which hands the output to the outbox)."""
    while node in parent:
        node = parent[node]
        if isinstance(node, ast.FunctionDef) and node.name == "__exit__":
            return True
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr == "call"
            for item in node.items
        ):
            return True
    return False


def protocol_names(module: ast.Module) -> set[str]:
    """The local names that may hold the protocol: bound from `.protocol` or by `with ... as`."""
    names = {"proto", "protocol"}
    for node in ast.walk(module):
        value = getattr(node, "value", None)
        if isinstance(node, ast.Assign) and isinstance(value, ast.Attribute) and value.attr == "protocol":
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return names


def protocol_calls_outside_the_choke_point(module: ast.Module) -> list[str]:
    parent = parents(module)
    receivers = protocol_names(module)
    found = []
    for node in ast.walk(module):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in PROTOCOL_METHODS:
            continue
        owner = node.func.value
        on_protocol = (isinstance(owner, ast.Name) and owner.id in receivers) or (
            isinstance(owner, ast.Attribute) and owner.attr in ("protocol", "_proto")
        )
        if on_protocol and not in_choke_point(node, parent):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("name", CONNECTION_MODULES)
def test_every_protocol_call_goes_through_the_choke_point(name: str) -> None:
    assert len(PROTOCOL_METHODS) >= 10, sorted(PROTOCOL_METHODS)
    assert protocol_calls_outside_the_choke_point(tree(name)) == []


def test_the_choke_point_check_finds_a_planted_call() -> None:
    planted = ast.parse(
        "def send(self):\n"
        "    proto = self.core.protocol\n"
        "    with self.core.call() as p:\n"
        "        p.send('fine')\n"
        "    proto.send_ping(b'')\n"
        "    self.core.protocol.fail(1011)\n"
    )
    assert [line.split(":")[0] for line in protocol_calls_outside_the_choke_point(planted)] == [
        "line 5",
        "line 6",
    ]


def test_no_hand_written_sync_remains() -> None:
    for name in CONNECTION_MODULES:
        assert "_sync(" not in (ROOT / "trio_ws" / name).read_text(), name


def test_websocket_is_at_most_350_lines() -> None:
    classes = {node.name: node for node in tree("connection.py").body if isinstance(node, ast.ClassDef)}
    websocket = classes["WebSocket"]
    assert websocket.end_lineno is not None
    assert websocket.end_lineno - websocket.lineno + 1 <= 350


def test_websocket_takes_one_connection_options_and_no_option_of_its_own() -> None:
    parameters = inspect.signature(WebSocket.__init__).parameters
    assert parameters["options"].annotation in (ConnectionOptions, "ConnectionOptions")
    assert not OPTION_NAMES & set(parameters)


def test_each_connection_option_is_defined_once() -> None:
    """Defaults live in `ConnectionOptions` alone: no function of the I/O layers has a
    parameter named after an option with a default of its own, and the configs built on it
    add fields without redefining its own. (The sans-I/O core stands alone, as h11 does,
    with defaults of its own; the Redis backends' `ssl_context` is Redis's.)"""
    redefined = []
    for path in sorted((ROOT / "trio_ws").rglob("*.py")):
        if path.name in SANS_IO or path.parent.name in ("backends", "extensions"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                with_defaults = arguments.args[len(arguments.args) - len(arguments.defaults) :]
                with_defaults += [
                    arg
                    for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
                    if default is not None
                ]
                redefined += [
                    f"{path.name}:{node.lineno} {node.name}({arg.arg}=...)"
                    for arg in with_defaults
                    if arg.arg in OPTION_NAMES
                ]
    assert redefined == []
    for config in (ServerConfig, ClientConfig):
        assert not OPTION_NAMES & set(inspect.get_annotations(config)), config


def test_the_keyword_options_mirror_the_connection_options_exactly() -> None:
    """`serve(**options)` and `connect(**options)` are typed by a TypedDict, which Python
    cannot derive from the dataclass: it must name each option with the same type."""
    from trio_ws import config

    shared = typing.get_type_hints(config._SharedOptions)
    fields = typing.get_type_hints(ConnectionOptions)
    assert shared == fields


def test_one_factory_builds_every_connection() -> None:
    """Only connection.py builds a `Protocol`, a `ConnectionCore` or a `WebSocket`: the
    server, the client and `trio_ws.testing` all go through `new_websocket`."""
    builders = []
    for path in sorted((ROOT / "trio_ws").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            function = getattr(node, "func", None)
            if isinstance(function, ast.Name) and function.id in ("WebSocket", "Protocol", "ConnectionCore"):
                builders.append((path.name, function.id))
    assert sorted(builders) == [
        ("connection.py", "ConnectionCore"),
        ("connection.py", "Protocol"),
        ("connection.py", "WebSocket"),
    ]


def test_the_internal_seams_are_not_public() -> None:
    for name in ("running", "keepalive"):
        assert not hasattr(WebSocket, name), name
    assert "running" not in trio_ws.__all__


def size_comparisons(module: ast.Module) -> list[int]:
    """Lines that compare something with a `max_size`, or with a name bound from one."""
    aliases = {"max_size"}

    def names_max_size(node: ast.AST) -> bool:
        return any(
            getattr(n, "id", None) in aliases or getattr(n, "attr", None) == "max_size"
            for n in ast.walk(node)
        )

    for node in ast.walk(module):  # `limit = ....max_size` binds an alias
        if isinstance(node, ast.Assign) and getattr(node.value, "attr", None) == "max_size":
            aliases |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    compares = [node for node in ast.walk(module) if isinstance(node, ast.Compare)]
    return [node.lineno for node in compares if any(map(names_max_size, [node.left, *node.comparators]))]


def test_the_size_check_finds_a_planted_comparison() -> None:
    """The join that `recv()` did by hand before the assembler is caught."""
    planted = "limit = core.protocol.max_size\nif limit is not None and size > limit:\n    fail()\n"
    assert set(size_comparisons(ast.parse(planted))) == {2}


@pytest.mark.parametrize("name", ["connection.py", "connection_core.py", "protocol.py", "inbox.py"])
def test_max_size_is_checked_only_by_the_message_assembler(name: str) -> None:
    """The limit on a message is the assembler's: the connection and the protocol pass it on
    and compare nothing with it (the parser gets `frame_limit`; a streamed message joined by
    `recv()` goes through `FragmentJoiner`)."""
    assert size_comparisons(tree(name)) == []
    assert size_comparisons(tree("assembler.py")), "the check must find the assembler's own comparisons"


def test_streaming_is_a_parameter_of_the_protocol_not_a_flag_on_it() -> None:
    """Whether a fragmented message is streamed is the caller's choice on each call."""
    assert "streaming" not in Protocol.__slots__
    assert "stream" in inspect.signature(Protocol.next_event).parameters
