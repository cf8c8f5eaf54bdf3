"""The Autobahn TestSuite's cases, run by kosoku against examples/echo.py."""

from __future__ import annotations

import asyncio
from collections import Counter

from kosoku import FailureError, run_fuzzingclient

from .conftest import ExampleProcess

GROUPS_1_TO_10 = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]  # there is no group 8
ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL"}


def run_cases(url: str, cases: list[str]) -> list:  # type: ignore[type-arg]
    try:
        return asyncio.run(run_fuzzingclient(url, cases=cases, concurrency=2))
    except FailureError as failure:
        return failure.results


def test_groups_1_to_10_without_compression(echo_process: ExampleProcess) -> None:
    results = run_cases(echo_process.url, GROUPS_1_TO_10)
    verdicts = Counter(r.behavior.value for r in results)
    print(f"\n{len(results)} cases: {dict(verdicts)}")
    bad = [
        f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value} {r.result} {r.result_close}"
        for r in results
        if r.behavior.value not in ACCEPTABLE or r.behavior_close.value not in ACCEPTABLE
    ]
    assert not bad, "\n".join(bad)
    assert len(results) == 301  # every case of groups 1-7, 9 and 10 ran
