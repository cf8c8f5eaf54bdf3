"""Every input kept under tests/fuzz/corpus/ (seeds, what fuzzing found interesting, and
each crash once fixed) replayed through its harness: the fuzzers' invariants, as tests."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"
HARNESSES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_every_harness_has_a_corpus() -> None:
    harnesses = {p.stem for p in CORPUS.parent.glob("fuzz_*.py")}
    assert harnesses == set(HARNESSES), "each harness keeps its inputs in corpus/<harness>/"
    assert all(len(list((CORPUS / name).iterdir())) >= 3 for name in HARNESSES)


@pytest.mark.parametrize("harness", HARNESSES)
def test_kept_inputs_hold_the_invariants(harness: str) -> None:
    one_input = importlib.import_module(f"tests.fuzz.{harness}").one_input
    inputs = sorted((CORPUS / harness).iterdir())
    for path in inputs:
        try:
            one_input(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"{path.name} breaks {harness}: {exc!r}") from exc
