"""Real proxy servers for tests, each on a free port of 127.0.0.1: Debian's tinyproxy
(HTTP CONNECT) and microsocks (SOCKS5), installed with apt-get when missing (as root)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from .conftest import debian_binary, free_port


class ProxyProcess:
    """A proxy server process; `url` is how a client names it (credentials included)."""

    def __init__(self, command: list[str], url: str, port: int) -> None:
        self.port = port
        self.url = url
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        output = self.stop()
        raise RuntimeError(f"{command[0]} did not start: {output}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out.decode(errors="replace")


def tinyproxy(
    tmp_path: Path, *, auth: tuple[str, str] | None = None, only_port: int | None = None
) -> ProxyProcess:
    """tinyproxy on a free port; with `auth` it wants Basic credentials; with `only_port`
    it refuses CONNECT to every other port (403)."""
    port = free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        "Allow 127.0.0.1",
        "LogLevel Info",
        "MaxClients 50",
    ]
    lines += ["User nobody", "Group nogroup"]
    if auth is not None:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    if only_port is not None:
        lines.append(f"ConnectPort {only_port}")
    config = tmp_path / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o644)
    user = f"{auth[0]}:{auth[1]}@" if auth else ""
    return ProxyProcess(
        [debian_binary("tinyproxy"), "-d", "-c", str(config)], f"http://{user}127.0.0.1:{port}", port
    )


def microsocks(*, auth: tuple[str, str] | None = None, scheme: str = "socks5") -> ProxyProcess:
    port = free_port()
    command = [debian_binary("microsocks"), "-i", "127.0.0.1", "-p", str(port)]
    if auth is not None:
        command += ["-u", auth[0], "-P", auth[1]]
    user = f"{auth[0]}:{auth[1]}@" if auth else ""
    return ProxyProcess(command, f"{scheme}://{user}127.0.0.1:{port}", port)
