"""``neuron-tui attribute``: one record per position with the engine's numbers (which
tests/engine/test_attribution.py holds against float64 by hand), and its refusals: one line, exit
2, nothing written."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from engine.neuron_engine import EngineOptions, NeuronEngine
from tests.helpers.cli import run_cli
from tui.cli import main

TEXT = "hello there, she said"


def _attribute(model, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "attribute", "--model", str(model), "--device", "cpu", "--cache-dir", str(tmp_path / "c"), *extra
    )


def test_one_record_per_position_with_its_neurons_and_ablations(tiny_llama_dir, tmp_path):
    out = tmp_path / "why.jsonl"
    args = ("--text", TEXT, "--top", "3", "--ablate", "1/3", "--ablate", "L0/N7", "-o", str(out))
    done = _attribute(tiny_llama_dir, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    engine = NeuronEngine(EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "e"))
    found = engine.attribute(TEXT, [0, 1], 3)
    first, second = engine.ablate(TEXT, 1, 3), engine.ablate(TEXT, 0, 7)
    assert [r["position"] for r in records] == list(range(found.n_positions))
    for position, record in enumerate(records):
        assert record["token_id"] == found.token_ids[position]
        assert record["predicted_id"] == found.target_ids[position]
        assert record["predicted"] == engine.vocabulary.text(int(found.target_ids[position]))
        assert record["logit"] == pytest.approx(found.logits[position], abs=1e-9)
        assert record["neuron_total"] == pytest.approx(found.neuron_total[position], abs=1e-9)
        for key, against in (("neurons", False), ("against", True)):
            expected = found.neurons(position, against=against)
            assert [(n["layer"], n["neuron"]) for n in record[key]] == [(e.layer, e.neuron) for e in expected]
            assert [n["dla"] for n in record[key]] == pytest.approx([e.dla for e in expected], abs=1e-9)
            for entry in record[key]:
                assert entry["share"] == pytest.approx(entry["dla"] / record["neuron_total"])
        assert [(a["layer"], a["neuron"]) for a in record["ablation"]] == [(1, 3), (0, 7)]
        for entry, ablation in zip(record["ablation"], (first, second)):
            assert entry["delta_logit"] == pytest.approx(ablation.delta_logit[position], abs=1e-7)
            assert entry["direct"] == pytest.approx(ablation.direct[position], abs=1e-9)
            assert entry["indirect"] == pytest.approx(entry["delta_logit"] - entry["direct"])
    assert records[0]["settings"]["layers"] == [0, 1]


def test_a_target_token_and_one_layer(tiny_llama_dir, tmp_path):
    done = _attribute(
        tiny_llama_dir, tmp_path, "--text", TEXT, "--target", "e", "--layers", "1", "--top", "2"
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["predicted_id"] for r in records} == {ord("e")} and {r["predicted"] for r in records} == {"e"}
    assert all(n["layer"] == 1 for r in records for n in r["neurons"] + r["against"])
    assert all(len(r["neurons"]) == 2 and "ablation" not in r for r in records)
    assert np.isfinite([r["logit"] for r in records]).all()


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (lambda d: ("--text", "  "), "the text is empty"),
        (lambda d: (), "--text T or --text-file F"),
        (lambda d: ("--text", "a", "--text-file", str(d / "t.txt")), "one of them"),
        (lambda d: ("--text-file", str(d / "missing.txt")), "cannot read"),
        (lambda d: ("--text-file", _write(d / "bad.txt", b"ab\xffcd")), "not UTF-8"),
        (lambda d: ("--text", TEXT, "--target", "hello"), "not one"),
        (lambda d: ("--text", TEXT, "--ablate", "2/0"), "layer 2 is out of range"),
        (lambda d: ("--text", TEXT, "--ablate", "1/64"), "neuron 64 is out of range"),
        (lambda d: ("--text", TEXT, "--ablate", "seven"), "write a neuron as L/N"),
        (lambda d: ("--text", "x" * 70), "more than the model's context of 64"),
        (lambda d: ("--text", TEXT, "--cosine", "--center-unembed"), "takes no --center-unembed, --cosine"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(make_args, expected, tiny_llama_dir, tmp_path, capsys):
    """In this process (the command line's own entry point), to keep the battery quick."""
    out = tmp_path / "out.jsonl"
    args = ("--model", str(tiny_llama_dir), "--device", "cpu", "--cache-dir", str(tmp_path / "c"))
    assert main(["attribute", *args, *make_args(tmp_path), "-o", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob("*.jsonl*"))
