"""Run every atheris harness for a time budget; report executions; fail on a crash.

python tests/fuzz/run.py --seconds 4            (what CI runs: a harness per core at a time)
python tests/fuzz/run.py --seconds 600 --keep   (a long run that adds new inputs to the corpus)

Each harness reads its kept inputs from tests/fuzz/corpus/<harness>/. New interesting inputs
go to a temporary folder unless --keep is given. A crash or a hang (an input taking more
than 10 s) leaves its input under tests/fuzz/crashes/ and fails the run: copy it into the
corpus once fixed, and tests/test_fuzz_corpus.py replays it on every test run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = sorted(p.stem for p in HERE.glob("fuzz_*.py"))


def run(name: str, seconds: int, keep: bool) -> tuple[int, bool, str]:
    """Fuzz one harness; return (executions, crashed, the tail of its output)."""
    corpus = HERE / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes = HERE / "crashes"
    crashes.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        dirs = [str(corpus)] if keep else [scratch, str(corpus)]
        proc = subprocess.run(
            [
                sys.executable,
                str(HERE / f"{name}.py"),
                f"-max_total_time={seconds}",
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-max_len=4096",
                f"-artifact_prefix={crashes}/{name}-",
                "-print_final_stats=1",
                *dirs,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
    output = proc.stdout + proc.stderr
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output) or re.findall(
        r"#(\d+)\s+DONE", output
    )
    executions = int(found[-1]) if found else 0
    return executions, proc.returncode != 0, "\n".join(output.splitlines()[-30:])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4, help="budget per harness")
    parser.add_argument("--keep", action="store_true", help="add new inputs to the kept corpus")
    parser.add_argument("harness", nargs="*", default=HARNESSES, help="which harnesses (default: all)")
    args = parser.parse_args()
    failed = []
    total = 0
    # One harness per core at a time: each still gets its whole budget of time.
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        outcomes = list(pool.map(lambda name: (name, *run(name, args.seconds, args.keep)), args.harness))
    for name, executions, crashed, tail in outcomes:
        total += executions
        print(
            f"{name}: {executions:,} executions in {args.seconds} s{' — CRASHED' if crashed else ''}",
            flush=True,
        )
        if crashed:
            print(tail)
            failed.append(name)
    print(f"fuzzing: {total:,} executions, {len(failed)} harness(es) crashed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
