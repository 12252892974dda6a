"""What a user gets out of a model of experts: records and CSV rows that name the expert, the
neuron within it, and the settings saying how layer-wide numbers pool the experts."""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.moe_models import write_moe_checkpoint


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return write_moe_checkpoint(tmp_path_factory.mktemp("moe") / "qwen3", "qwen3_moe")


def test_scan_records_and_csv_rows_name_the_expert(qwen3, tmp_path):
    common = ("--model", str(qwen3), "--cache-dir", str(tmp_path / "cache"))
    done = run_cli("scan", *common, "--layers", "0,1", "-o", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["settings"]["experts"]["per_token"] == 2
    records = document["neurons"]
    dense = [r for r in records if r["layer"] == 0]
    routed = [r for r in records if r["layer"] == 1]
    assert len(dense) == 24 and all("expert" not in r for r in dense)
    units = [(e, n) for e in range(5) for n in range(8)]
    assert [(r["expert"], r["neuron"]) for r in routed] == units
    done = run_cli("scan", *common, "--layers", "0,1", "-o", str(tmp_path / "s.csv"))
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "s.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [r["expert"] for r in rows[:24]] == [""] * 24
    assert [(r["expert"], r["neuron"]) for r in rows[24:]] == [(str(e), str(n)) for e, n in units]
    found = run_cli("tokens", *common, "--layers", "1", "--top", "3", "o")
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits and all(0 <= h["expert"] < 5 and 0 <= h["neuron"] < 8 for h in hits)
