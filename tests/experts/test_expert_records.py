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


def test_a_diff_of_two_models_of_experts_finds_the_changed_expert_neuron(qwen3, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "changed"
    shutil.copytree(qwen3, copy)
    tensors = load_file(copy / "model.safetensors")
    name = "model.layers.1.mlp.experts.2.down_proj.weight"  # [d_model, d_expert]: column 3 is neuron 3
    tensors[name][:, 3] += torch.linspace(-0.5, 0.5, tensors[name].shape[0])
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "diff.jsonl"
    done = run_cli(
        "diff",
        "--model",
        str(qwen3),
        "--against",
        str(copy),
        "--layers",
        "1",
        "-o",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    changed = [(r["expert"], r["neuron"]) for r in records if r["cos"] < 1 - 1e-9]
    assert changed == [(2, 3)]
