"""Griffe extension for the API reference: a function decorated with `asynccontextmanager`
is shown as what it is to a caller, `f(...) -> AbstractAsyncContextManager[T]` used with
`async with`, not as the `async` generator function it is written as."""

from __future__ import annotations

from typing import Any

import griffe

DECORATORS = ("asynccontextmanager", "contextlib.asynccontextmanager")


class AsyncContextManagers(griffe.Extension):
    def on_function_instance(self, *, node: Any, func: griffe.Function, agent: Any, **kwargs: Any) -> None:
        if not any(str(decorator.value) in DECORATORS for decorator in func.decorators):
            return
        func.labels.discard("async")
        returns = str(func.returns or "")
        if returns.startswith("AsyncIterator[") and returns.endswith("]"):
            func.returns = f"AbstractAsyncContextManager[{returns[len('AsyncIterator[') : -1]}]"
