"""Keyword options completed with a function's defaults, for a seam that takes another
function's options: `connect_over` takes `connect`'s."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["completed"]


def completed(
    function: Callable[..., Any], names: frozenset[str], given: Mapping[str, Any], kind: str
) -> dict[str, Any]:
    """`given`, with `function`'s default for every name in `names` it leaves out; a
    TypeError names any option outside `names`."""
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"unknown {kind} options: {', '.join(unknown)}")
    defaults = inspect.signature(function).parameters
    return {name: given.get(name, defaults[name].default) for name in names}
