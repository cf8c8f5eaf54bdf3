"""The load client: asyncio, precomputed masked frames, and byte counting.

    python benchmarks/load.py WORKLOAD PORT SERVER_PID [--raw] [--compression]
        [--duration 2] [--repeat 3] [--warmup 1]

Prints one JSON line: the workload's figure for each timed repetition, and the CPU share
of the server process (read from /proc) and of this client over the same windows. The
client does as little per message as possible (frames are built once; replies are counted,
not decoded) so that it stays faster than every server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import zlib
from collections.abc import Awaitable, Callable

KEY = b"\x37\xfa\x21\x3d"
CLOSE = bytes([0x88, 0x82]) + KEY + bytes(a ^ b for a, b in zip(b"\x03\xe8", KEY, strict=False))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def masked_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A client frame (masked), built once and sent many times."""
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(payload)
    if n < 126:
        header = bytes([first, 0x80 | n])
    elif n < 65536:
        header = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
    return header + KEY + masked


def count_frames(buffer: bytearray) -> int:
    """Remove the complete server frames at the start of `buffer`; return how many."""
    count, pos, size = 0, 0, len(buffer)
    while size - pos >= 2:
        length = buffer[pos + 1] & 0x7F
        header = 2
        if length == 126:
            if size - pos < 4:
                break
            length, header = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if size - pos < 10:
                break
            length, header = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
        if size - pos < header + length:
            break
        pos += header + length
        count += 1
    del buffer[:pos]
    return count


class Target:
    def __init__(self, port: int, raw: bool, compression: bool) -> None:
        self.port = port
        self.raw = raw
        extensions = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
            "client_max_window_bits\r\n"
            if compression
            else ""
        )
        self.compression = compression
        self.request_head = (
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        )

    def frame(self, opcode: int, payload: bytes) -> bytes:
        if not self.compression:
            return masked_frame(opcode, payload)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return masked_frame(opcode, data[:-4], rsv1=True)

    def close(self, writer: asyncio.StreamWriter) -> None:
        """Leave politely: a close frame, then the TCP close."""
        if not self.raw:
            writer.write(CLOSE)
        writer.close()

    async def open(self, path: str = "/") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**22)
        if not self.raw:
            writer.write(self.request_head.format(path=path).encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head.decode(errors="replace"))
        return reader, writer


class Window:
    """The timed part of a workload: it starts after the connections are open."""

    def __init__(self, seconds: float, server_pid: int) -> None:
        self.seconds = seconds
        self.server_pid = server_pid
        self.deadline = float("inf")

    def start(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.seconds
        self.server_cpu0 = cpu_seconds(self.server_pid)
        self.client_cpu0 = time.process_time()

    def __call__(self) -> bool:
        return time.monotonic() >= self.deadline

    def result(self, amount: float) -> tuple[float, float, float]:
        wall = time.monotonic() - self.started
        server_cpu = (cpu_seconds(self.server_pid) - self.server_cpu0) / wall
        client_cpu = (time.process_time() - self.client_cpu0) / wall
        return amount / wall, server_cpu, client_cpu


def reply_size(target: Target, frame: bytes, payload_size: int) -> int:
    """Bytes of one reply: the echo itself when raw, else an unmasked frame."""
    if target.raw:
        return len(frame)
    header = 2 if payload_size < 126 else 4 if payload_size < 65536 else 10
    return header + payload_size


async def rtt1(target: Target, stop: Window) -> float:
    frame = target.frame(0x1, b"x" * 32)
    size = reply_size(target, frame, 32)
    reader, writer = await target.open()
    stop.start()
    count = 0
    while not stop():
        writer.write(frame)
        await reader.readexactly(size)
        count += 1
    target.close(writer)
    return count


async def echo64(target: Target, stop: Window) -> float:
    frame = target.frame(0x1, b"y" * 32)
    counts = [0] * 64
    streams = [await target.open() for _ in range(64)]
    stop.start()

    async def connection(index: int) -> None:
        reader, writer = streams[index]
        writer.write(frame * 16)
        buffer = bytearray()
        size = reply_size(target, frame, 32)
        while not stop():
            data = await reader.read(2**18)
            if not data:
                raise RuntimeError("server closed")
            buffer += data
            if target.raw:
                done = len(buffer) // size
                del buffer[: done * size]
            else:
                done = count_frames(buffer)
            counts[index] += done
            writer.write(frame * done)
        target.close(writer)

    await asyncio.gather(*(connection(i) for i in range(64)))
    return sum(counts)


async def big(target: Target, stop: Window) -> float:
    payload = os.urandom(2**20)
    frame = target.frame(0x2, payload)
    size = reply_size(target, frame, len(payload))
    reader, writer = await target.open()
    stop.start()
    count = 0
    while not stop():
        writer.write(frame)
        await reader.readexactly(size)
        count += 1
    target.close(writer)
    return count * len(payload) / 1e6  # MB echoed


FANOUT_CLIENTS = 500
FANOUT_BATCH = 100


async def fanout(target: Target, stop: Window) -> float:
    streams = [await target.open("/fanout") for _ in range(FANOUT_CLIENTS)]
    go = target.frame(0x1, f"go {FANOUT_BATCH}".encode())
    await asyncio.sleep(0.2)  # let the server register every connection
    stop.start()
    delivered = 0

    async def receive(reader: asyncio.StreamReader, expected: int) -> None:
        buffer = bytearray()
        got = 0
        while got < expected:
            data = await reader.read(2**18)
            if not data:
                raise RuntimeError("server closed")
            buffer += data
            got += count_frames(buffer)

    while not stop():
        streams[0][1].write(go)
        await asyncio.gather(*(receive(reader, FANOUT_BATCH) for reader, _ in streams))
        delivered += FANOUT_CLIENTS * FANOUT_BATCH
    for _, writer in streams:
        target.close(writer)
    return delivered


async def handshake(target: Target, stop: Window) -> float:
    close = masked_frame(0x8, b"\x03\xe8")
    count = 0
    stop.start()

    async def worker() -> None:
        nonlocal count
        while not stop():
            reader, writer = await target.open()
            writer.write(close)
            while await reader.read(4096):  # until the server closes
                pass
            writer.close()
            count += 1

    await asyncio.gather(*(worker() for _ in range(8)))
    return count


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


IDLE_CONNECTIONS = 2000


async def idle_mem(target: Target, server_pid: int) -> float:
    before = rss_kib(server_pid)
    streams = [await target.open() for _ in range(IDLE_CONNECTIONS)]
    await asyncio.sleep(1)
    after = rss_kib(server_pid)
    for _, writer in streams:
        target.close(writer)
    await asyncio.sleep(0.5)
    return (after - before) / IDLE_CONNECTIONS


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


WORKLOADS: dict[str, Callable[[Target, Window], Awaitable[float]]] = {
    "rtt1": rtt1,
    "echo64": echo64,
    "big": big,
    "fanout": fanout,
    "handshake": handshake,
}


async def main(args: argparse.Namespace) -> None:
    target = Target(args.port, args.raw, args.compression)
    if args.workload == "idle_mem":
        values = [await idle_mem(target, args.server_pid) for _ in range(args.repeat)]
        print(json.dumps({"values": values, "server_cpu": [], "client_cpu": []}))
        return
    run = WORKLOADS[args.workload]

    async def timed(seconds: float) -> tuple[float, float, float]:
        window = Window(seconds, args.server_pid)
        return window.result(await run(target, window))

    await timed(args.warmup)
    results = [await timed(args.duration) for _ in range(args.repeat)]
    print(
        json.dumps({k: [r[i] for r in results] for i, k in enumerate(["values", "server_cpu", "client_cpu"])})
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=[*WORKLOADS, "idle_mem"])
    parser.add_argument("port", type=int)
    parser.add_argument("server_pid", type=int)
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--duration", type=float, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1)
    asyncio.run(main(parser.parse_args()))
