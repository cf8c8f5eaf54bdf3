"""docs/observe.md against the code: every metric the exporter registers is in its tables,
with its type and labels, and every metric there is registered; `promtool` (Debian's
prometheus package) accepts its alerting rules and its scrape configuration."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from trio_ws.counters import EXPORTED, METRICS
from trio_ws.metrics import EXPORTER

from .conftest import ROOT, debian_binary

PAGE = ROOT / "docs" / "observe.md"
ROW = re.compile(
    r"^\| `(?P<name>trio_ws_\w+)` \| (?P<kind>\w+) \| (?P<labels>[^|]*) \| (?P<meaning>[^|]+) \|$", re.M
)


def documented(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each metric of the page's tables: its type and labels."""
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for row in ROW.finditer(text):
        labels = tuple(re.findall(r"`(\w+)`", row["labels"]))
        assert row["name"] not in rows, f"{row['name']} is in the tables twice"
        rows[row["name"]] = (row["kind"], labels)
    return rows


def registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each metric the exporter gives a scrape: its type and labels."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for family in EXPORTER.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        found[name] = (family.type, EXPORTED[name].labels)
    return found


def mismatches(text: str) -> list[str]:
    docs, code = documented(text), registered()
    problems = [f"{name} is registered but not documented" for name in code.keys() - docs.keys()]
    problems += [f"{name} is documented but not registered" for name in docs.keys() - code.keys()]
    problems += [
        f"{name}: documented as {docs[name]}, registered as {code[name]}"
        for name in docs.keys() & code.keys()
        if docs[name] != code[name]
    ]
    return problems


def test_every_metric_is_documented_and_every_documented_one_exists() -> None:
    text = PAGE.read_text()
    assert len(documented(text)) == len(EXPORTED)
    assert mismatches(text) == []


@pytest.mark.parametrize(
    ("plant", "complaint"),
    [
        (
            lambda text: text.replace(
                "| `trio_ws_hub_deliveries_total` |", "| `trio_ws_hub_deliverances_total` |"
            ),
            "not documented",
        ),
        (lambda text: text + "\n| `trio_ws_imaginary_total` | counter | - | Nothing. |\n", "not registered"),
        (
            lambda text: text.replace(
                "| `trio_ws_handshakes_total` | counter | `status` |",
                "| `trio_ws_handshakes_total` | counter | `code` |",
            ),
            "registered as",
        ),
    ],
)
def test_the_check_fails_on_a_planted_mismatch(plant: object, complaint: str) -> None:
    problems = mismatches(plant(PAGE.read_text()))  # type: ignore[operator]
    assert any(complaint in problem for problem in problems), problems


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_promtool_accepts_the_documented_rules_and_scrape_configuration(tmp_path: Path) -> None:
    promtool = debian_binary("promtool", "prometheus")
    scrape, rules = yaml_blocks(PAGE.read_text())
    (tmp_path / "rules.yml").write_text(rules)
    checked = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout, checked.stdout
    (tmp_path / "prometheus.yml").write_text(scrape)
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_named_in_the_rules_exists() -> None:
    _, rules = yaml_blocks(PAGE.read_text())
    named = set(re.findall(r"\btrio_ws_\w+", rules))
    exported = set(METRICS) | {f"{name}_bucket" for name, spec in METRICS.items() if spec.kind == "histogram"}
    assert named and named <= exported, named - exported
