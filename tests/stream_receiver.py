"""A client in its own process, for measuring what receiving one large message costs.

python tests/stream_receiver.py URI streaming|whole deflate|none

Receives one binary message, with `recv_streaming()` or with `recv()` (max_size=None),
checks every byte against the pattern the test sends, and prints one JSON line: the bytes
received, the fragments, and the peak RSS growth (VmHWM at the end minus VmRSS before).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

import trio_ws

PATTERN = bytes(range(256))


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


async def main(uri: str, how: str, compression: str) -> None:
    options: dict[str, object] = {"compression": "deflate" if compression == "deflate" else None}
    if how == "whole":
        options["max_size"] = None
    async with trio_ws.connect(uri, **options) as ws:  # type: ignore[arg-type]
        before = status("VmRSS")
        received = fragments = 0
        intact = True
        if how == "streaming":
            async for fragment in ws.recv_streaming():
                assert isinstance(fragment, bytes)
                offset = received % 256
                intact = (
                    intact and fragment[:256] == (PATTERN[offset:] + PATTERN[:offset])[: len(fragment[:256])]
                )
                received += len(fragment)
                fragments += 1
        else:
            message = await ws.recv()
            assert isinstance(message, bytes)
            intact = message[:256] == PATTERN
            received, fragments = len(message), 1
            del message
        growth = status("VmHWM") - before
    print(json.dumps({"received": received, "fragments": fragments, "intact": intact, "peak_growth": growth}))


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
