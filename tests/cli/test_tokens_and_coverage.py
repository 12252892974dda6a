"""Token -> neuron search (exact), vocabulary coverage and the per-layer table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from engine.data.coverage import compute_coverage
from engine.data.null import NullBaseline
from engine.data.token_index import TokenIndex
from engine.data.tokens import Vocabulary
from engine.settings import Projection
from tests.helpers.cli import run_cli
from tests.helpers.reference import reference_scores


def _cli(tiny_gguf, tmp_path, *args):
    return run_cli(*args, "--model", str(tiny_gguf), "--device", "cpu", "--cache-dir", str(tmp_path / "c"))


def test_variants_put_the_exact_text_first():
    vocab = Vocabulary.from_bytes([b"the", b" the", b"The", b" The", b"THE", b"x", b" coming"])
    index = TokenIndex(vocab)
    assert [m.token_id for m in index.find(" the")] == [1, 0, 3, 2, 4]
    assert index.find(" the")[0].exact and not index.find(" the")[1].exact
    assert [m.token_id for m in index.find("Ġcoming")] == [6]
    assert [m.token_id for m in index.find("▁the")][:1] == [1]
    assert index.find("nothing") == []
    assert [m.token_id for m in index.search("omi")] == [6]


def _reference_token_neurons(weights, token_id, top, projection=Projection()):
    hits = []
    for layer, w_out in enumerate(weights.w_out):
        dots = reference_scores(w_out, weights.unembed, weights.final_norm, projection)[:, token_id]
        hits += [(abs(d), layer, n, d) for n, d in enumerate(dots)]
    hits.sort(key=lambda h: (-h[0], h[1], h[2]))
    return [(layer, neuron, dot) for _, layer, neuron, dot in hits[:top]]


@pytest.mark.parametrize("flags", [[], ["--fold-final-norm", "--center-unembed", "--cosine"]])
def test_tokens_command_equals_float64_reference(tiny_gguf, tiny_weights, tmp_path, flags):
    out = tmp_path / "t.jsonl"
    done = _cli(
        tiny_gguf,
        tmp_path,
        "tokens",
        " coming",
        "St",
        "[/]",
        "--top",
        "5",
        "--exact-only",
        "--output",
        str(out),
        *flags,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    projection = Projection(*(bool(flags),) * 3)
    for query in (" coming", "St", "[/]"):
        got = [r for r in rows if r["query"] == query]
        assert len(got) == 5 and all(r["token"] == query and r["exact"] for r in got)
        expected = _reference_token_neurons(tiny_weights, got[0]["token_id"], 5, projection)
        assert [(r["layer"], r["neuron"]) for r in got] == [(layer, neuron) for layer, neuron, _ in expected]
        np.testing.assert_allclose([r["dot"] for r in got], [dot for _, _, dot in expected], rtol=1e-12)
    assert set(rows[0]) >= {"token_id", "token", "layer", "neuron", "dot"}


def test_tokens_command_includes_variants_and_rejects_unknown_text(tiny_gguf, tmp_path):
    done = _cli(tiny_gguf, tmp_path, "tokens", "coming", "--top", "2")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["token"] for r in rows} >= {" coming", "Coming"}
    bad = _cli(tiny_gguf, tmp_path, "tokens", "zzzzqqq")
    assert (
        bad.returncode == 2 and "no token matches" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    )


def test_coverage_against_its_definition(tiny_gguf, tiny_weights, tmp_path):
    out = tmp_path / "cov.json"
    done = _cli(tiny_gguf, tmp_path, "coverage", "--output", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    threshold = document["null_p99"]
    best = np.zeros(400)
    for layer, w_out in enumerate(tiny_weights.w_out):
        unit = np.abs(reference_scores(w_out, tiny_weights.unembed, None, Projection())) / np.linalg.norm(
            w_out.astype(np.float64), axis=1, keepdims=True
        )
        layer_best = unit.max(axis=0)
        entry = document["layers"][layer]
        assert entry["covered"] == int((layer_best > threshold).sum())
        best = np.maximum(best, layer_best)
    assert document["overall"]["covered"] == int((best > threshold).sum())
    assert document["best"][0]["best_unit_dot"] == pytest.approx(best.max(), rel=1e-5)
    assert document["worst"][0]["best_unit_dot"] == pytest.approx(best.min(), rel=1e-5)
    rows_path = tmp_path / "cov.csv"
    assert _cli(tiny_gguf, tmp_path, "coverage", "--output", str(rows_path)).returncode == 0
    rows = list(csv.DictReader(rows_path.open(newline="")))
    assert len(rows) == 400 and {"token", "best_layer", "best_neuron", "covered_layers"} <= set(rows[0])
    summary = _cli(tiny_gguf, tmp_path, "coverage")
    assert summary.returncode == 0 and "best covered" in summary.stdout


def test_coverage_shares():
    class Result:
        def __init__(self, layer, values):
            self.layer = layer
            self.token_unit_best = np.array(values, dtype=np.float32)
            self.token_unit_best_neuron = np.arange(len(values), dtype=np.int32)
            self.experts = None  # dense layers
            self.dictionary = None  # the neurons, not a dictionary's features

    null = NullBaseline(values=np.linspace(0.0, 1.0, 101))  # p99 = 0.99
    coverage = compute_coverage([Result(0, [0.5, 1.2, 0.1]), Result(3, [1.5, 0.2, 0.3])], null)
    assert coverage.covered_per_layer == {0: 1, 3: 1}
    assert coverage.overall_share == pytest.approx(2 / 3)
    assert coverage.best_layer.tolist() == [3, 0, 3]
    assert coverage.covered_layers.tolist() == [1, 1, 0]
    assert coverage.ranked(1, best=False).tolist() == [2]


def test_layers_command(tiny_gguf, tmp_path):
    done = _cli(tiny_gguf, tmp_path, "layers")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    header = lines[1].split("\t")
    assert header[:3] == ["layer", "p50", "p90"] and len(lines) == 2 + 3
    assert "kurtosis_p50" in header and "kurtosis_p99" in header  # as --help says
    out = tmp_path / "layers.json"
    assert _cli(tiny_gguf, tmp_path, "layers", "--layers", "0-1", "--output", str(out)).returncode == 0
    document = json.loads(out.read_text())
    assert [row["layer"] for row in document["layers"]] == [0, 1]
