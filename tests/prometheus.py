"""A real Prometheus (Debian's package) on a free port of 127.0.0.1, scraping given targets
every half second, and its HTTP query API; and scraping `/metrics` ourselves: for the
metrics tests."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from .conftest import debian_binary, free_port, wait_until_up

SCRAPE_INTERVAL = 0.5

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposition(text: str) -> Samples:
    """Every sample of an exposition text, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(url: str) -> tuple[int, str]:
    """A plain GET: the status and the body, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def scrape(url: str) -> Samples:
    """Every sample `url` (a /metrics) gives."""
    status, text = await trio.to_thread.run_sync(get, url)
    assert status == 200, text
    return exposition(text)


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Prometheus:
    """A running Prometheus: `await value(expression)` asks it."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:
            body: bytes = answer.read()
            return body

    async def query(self, expression: str) -> list[dict[str, object]]:
        """The instant vector `expression` gives now: each sample's labels and value."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        answer = json.loads(await trio.to_thread.run_sync(self._get, path))
        assert answer["status"] == "success", answer
        return [
            {"labels": sample["metric"], "value": float(sample["value"][1])}
            for sample in answer["data"]["result"]
        ]

    async def value(self, expression: str) -> float | None:
        """The single value of `expression` now, or None while it has none."""
        samples = await self.query(expression)
        assert len(samples) <= 1, samples
        return None if not samples else float(samples[0]["value"])  # type: ignore[arg-type]

    async def wait_for(self, expected: dict[str, float], seconds: float = 30) -> dict[str, float | None]:
        """Ask each expression until all give their expected value (a scrape or two
        later); what they gave last, to compare in the test."""
        deadline = trio.current_time() + seconds
        while True:
            got = {expression: await self.value(expression) for expression in expected}
            if got == expected or trio.current_time() > deadline:
                return got
            await trio.sleep(SCRAPE_INTERVAL)


@contextmanager
def prometheus(tmp_path: Path, targets: list[str]) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` ("127.0.0.1:port", at /metrics)."""
    binary = debian_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {int(SCRAPE_INTERVAL * 1000)}ms\n"
        f"  scrape_timeout: {int(SCRAPE_INTERVAL * 1000)}ms\n"
        "scrape_configs:\n"
        "  - job_name: trio_ws\n"
        f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 -- closed with the process
    )
    server = Prometheus(port)
    try:
        wait_until_up(
            process,
            lambda: server._get("/-/ready"),
            lambda: f"prometheus did not start: {(tmp_path / 'prometheus.log').read_text()[-2000:]}",
            seconds=30,
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
