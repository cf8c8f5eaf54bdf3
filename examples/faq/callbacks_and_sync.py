"""Are there onopen/onmessage/onerror/onclose callbacks? Can I use trio_ws without async/await?

No callbacks: a loop says the same thing, in order, with errors where they happen
(`run_with_callbacks` shows the mapping). Without async/await: run Trio in a thread of its
own and talk to it through `trio.from_thread`; `BlockingClient` does that for a client.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

import trio_ws


async def run_with_callbacks(
    uri: str,
    on_open: Callable[[trio_ws.WebSocket], Any],
    on_message: Callable[[trio_ws.WebSocket, trio_ws.Message], Any],
    on_close: Callable[[int | None, str | None], Any],
    on_error: Callable[[Exception], Any],
) -> None:
    """The callback style, as a plain loop."""
    try:
        async with trio_ws.connect(uri) as ws:
            await on_open(ws)
            async for message in ws:
                await on_message(ws, message)
        on_close(ws.close_code, ws.close_reason)
    except (OSError, trio_ws.WebSocketError) as exc:
        on_error(exc)


class BlockingClient:
    """A WebSocket client for code without async/await: Trio runs in a background thread."""

    def __init__(self, uri: str, timeout: float = 10) -> None:
        self._received: queue.Queue[trio_ws.Message | Exception] = queue.Queue()
        ready: queue.Queue[tuple[trio.lowlevel.TrioToken, trio_ws.WebSocket] | BaseException] = queue.Queue()
        self._done = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main, uri, ready), daemon=True)
        self._thread.start()
        started = ready.get(timeout=timeout)
        if isinstance(started, BaseException):
            raise started
        self._token, self._ws = started

    async def _main(self, uri: str, ready: queue.Queue[Any]) -> None:
        try:
            async with trio_ws.connect(uri) as ws:
                ready.put((trio.lowlevel.current_trio_token(), ws))
                try:
                    async for message in ws:
                        self._received.put(message)
                except trio_ws.ConnectionClosed as exc:
                    self._received.put(exc)
                    return
                self._received.put(trio_ws.ConnectionClosedOK(ws.close_code or 1000, ws.close_reason or ""))
        except BaseException as exc:
            ready.put(exc)

    def send(self, message: str | bytes) -> None:
        trio.from_thread.run(self._ws.send, message, trio_token=self._token)

    def recv(self, timeout: float | None = None) -> trio_ws.Message:
        item = self._received.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        trio.from_thread.run(self._ws.close, trio_token=self._token)
        self._thread.join()


if __name__ == "__main__":
    import sys

    client = BlockingClient(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/")
    client.send("hello from plain Python")
    print(client.recv(timeout=5))
    client.close()
