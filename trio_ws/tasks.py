"""A nursery that lets the body's exception out as itself, not in an ExceptionGroup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

__all__ = ["open_nursery_unwrapped", "raise_unwrapped"]


@asynccontextmanager
async def open_nursery_unwrapped() -> AsyncIterator[trio.Nursery]:
    """`trio.open_nursery()`, but a lone exception comes out unwrapped.

    Our background tasks never raise, so a group of one holds the body's own exception:
    users of `connect()` or `open_server()` should see it as they raised it. A group of
    several (a bug of ours on top of the body's error) stays a group.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        raise_unwrapped(group)


def raise_unwrapped(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise a nursery's group of one as its lone exception (with its own context kept);
    a group of several as it is. Neither stays in this frame's locals: the traceback
    holds the frame, and a cycle through it would keep the connection alive until the
    cyclic collector runs."""
    exc: BaseException = group.exceptions[0] if len(group.exceptions) == 1 else group
    del group
    context, suppress = exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__suppress_context__ = context, suppress
        del exc
