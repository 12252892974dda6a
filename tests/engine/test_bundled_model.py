"""The real bundled model (SmolLM2-135M-Instruct, Q4_1 GGUF), end to end."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from engine.settings import Projection
from engine.sources.resolve import bundled_model_path, locate_model, open_source
from tests.helpers.cli import run_cli
from tests.helpers.exactness import assert_ranked_equal
from tests.helpers.reference import reference_layer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled():
    return open_source(locate_model(None))


def test_bundled_model_shapes(bundled):
    info = bundled.info
    assert (info.n_layers, info.d_model, info.d_mlp, info.d_vocab) == (30, 576, 1536, 49152)
    vocab = bundled.vocabulary()
    assert vocab.text(314) == " is"
    assert vocab.text(0) == "<|endoftext|>"


@pytest.fixture(scope="module")
def raw_references(bundled):
    """Float64 references of layers 0, 13 and 29 under the raw projection, computed once for the
    tests that share them (kept in one xdist group, so in one process)."""
    unembed = bundled.unembed()
    return {
        layer: reference_layer(bundled.mlp_out(layer), unembed, None, Projection(), 10, 8)
        for layer in (0, 13, 29)
    }


def _assert_lists_match(rows, ref) -> None:
    """Records' top, promote and suppress lists against the float64 reference's."""
    for field, key, ref_ids in (
        ("top", np.abs, ref["top_ids"]),
        ("promote", None, ref["promote_ids"]),
        ("suppress", None, ref["suppress_ids"]),
    ):
        ids, dots = _records_to_arrays(rows, field)
        assert_ranked_equal(ids, dots, ref["scores"], ref_ids, key or (lambda x: x))


def _records_to_arrays(records, field):
    ids = np.array([[t["token_id"] for t in r[field]] for r in records])
    dots = np.array([[t["dot"] for t in r[field]] for r in records])
    return ids, dots


@pytest.mark.xdist_group("bundled-raw-references")
def test_scan_of_three_layers_equals_float64_reference_and_caches(raw_references, tmp_path):
    out = tmp_path / "x.jsonl"
    args = [
        "scan",
        "--layers",
        "0,13,29",
        "--top-k",
        "10",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    cold = run_cli(*args, "--output", str(out))
    assert cold.returncode == 0, cold.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4608
    for layer in (0, 13, 29):
        rows = [r for r in records if r["layer"] == layer]
        ref = raw_references[layer]
        _assert_lists_match(rows, ref)
        np.testing.assert_allclose([r["max_dot"] for r in rows], ref["max_dot"], rtol=1e-5)
        np.testing.assert_allclose([r["kurtosis"] for r in rows], ref["kurtosis"], rtol=1e-5)
        np.testing.assert_allclose([r["skew"] for r in rows], ref["skew"], rtol=1e-5, atol=1e-5)
    warm = run_cli(*args, "--output", str(tmp_path / "y.jsonl"))
    assert warm.returncode == 0 and "computed" not in warm.stderr
    assert "loading model weights" not in warm.stderr, "a warm run reads the cache, not the weights"
    assert warm.stderr.count("from cache") == 3
    assert (tmp_path / "y.jsonl").read_text() == out.read_text()


def test_scan_with_all_projection_flags_equals_reference(bundled, tmp_path):
    """Gurnee et al.'s setting (fold + center + cosine): promote/suppress tokens, skew and kurtosis
    of every neuron of layers 0 and 29 equal the float64 reference."""
    out = tmp_path / "flags.jsonl"
    done = run_cli(
        "scan",
        "--layers",
        "0,29",
        "--top-k",
        "10",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
        "--fold-final-norm",
        "--center-unembed",
        "--cosine",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["settings"]["projection"] == "fold+center+cosine"
    projection = Projection(fold_final_norm=True, center_unembed=True, cosine=True)
    unembed, norm = bundled.unembed(), bundled.final_norm_weight()

    for layer in (0, 29):
        rows = [r for r in records if r["layer"] == layer]
        ref = reference_layer(bundled.mlp_out(layer), unembed, norm, projection, 10, 8)
        _assert_lists_match(rows, ref)
        np.testing.assert_allclose([r["skew"] for r in rows], ref["skew"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose([r["kurtosis"] for r in rows], ref["kurtosis"], rtol=1e-5)
        np.testing.assert_allclose([r["std"] for r in rows], ref["std"], rtol=1e-5)


@pytest.mark.xdist_group("bundled-raw-references")
def test_bf16_products_of_the_bundled_model_equal_the_float64_reference(raw_references, tmp_path):
    """``--dtype bfloat16``: the dequantised GGUF weights are not bf16, so both operands are split
    into bf16 parts; every list and statistic of layers 0 and 29 still equals float64's."""
    out = tmp_path / "bf16.jsonl"
    args = ["scan", "--layers", "0,29", "--dtype", "bfloat16", "--device", "cpu"]
    done = run_cli(*args, "--cache-dir", str(tmp_path / "c"), "--output", str(out))
    assert done.returncode == 0, done.stderr
    said = re.findall(r"products in (bfloat16 x\d \(W_U in 3 parts, W_out in \d parts\))", done.stderr)
    assert len(said) == 2, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["products"] for r in records} == set(said)
    for layer in (0, 29):
        rows = [r for r in records if r["layer"] == layer]
        ref = raw_references[layer]
        _assert_lists_match(rows, ref)
        np.testing.assert_allclose([r["std"] for r in rows], ref["std"], rtol=1e-5)
        np.testing.assert_allclose([r["skew"] for r in rows], ref["skew"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose([r["kurtosis"] for r in rows], ref["kurtosis"], rtol=1e-5)


def test_direct_gguf_read_equals_transformer_bridge(bundled):
    """The fast GGUF reader gives the very tensors TransformerLens's TransformerBridge gives."""
    from engine.sources.bridge_source import BridgeSource

    path = bundled_model_path()
    bridge = BridgeSource(path.parent, "x", "bridge", gguf_file=path.name)
    assert bridge.info.n_layers == 30 and bridge.info.d_mlp == 1536
    for layer in (0, 29):
        np.testing.assert_array_equal(bridge.mlp_out(layer), bundled.mlp_out(layer))
    np.testing.assert_array_equal(bridge.unembed(), bundled.unembed())
    np.testing.assert_array_equal(bridge.final_norm_weight(), bundled.final_norm_weight())
    bridge_vocab, direct_vocab = bridge.vocabulary(), bundled.vocabulary()
    assert bridge_vocab.texts[:2000] == direct_vocab.texts[:2000]


def test_tokens_command_over_all_layers_equals_reference(bundled, tmp_path):
    """`tokens " the" " coming" "St" --top 5`: each exact token's 5 best neurons over all 30 layers."""
    out = tmp_path / "t.jsonl"
    done = run_cli(
        "tokens",
        " the",
        " coming",
        "St",
        "--top",
        "5",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    unembed = bundled.unembed()
    w_outs = [bundled.mlp_out(layer).astype(np.float64) for layer in range(30)]
    for query in (" the", " coming", "St"):
        got = [r for r in rows if r["query"] == query and r["exact"]]
        assert len(got) == 5 and all(r["token"] == query for r in got)
        column = unembed[:, got[0]["token_id"]].astype(np.float64)
        hits = sorted(
            ((abs(d), layer, n, d) for layer, w in enumerate(w_outs) for n, d in enumerate(w @ column)),
            key=lambda h: (-h[0], h[1], h[2]),
        )[:5]
        assert [(r["layer"], r["neuron"]) for r in got] == [(layer, n) for _, layer, n, _ in hits]
        np.testing.assert_allclose([r["dot"] for r in got], [d for *_, d in hits], rtol=1e-12)


@pytest.mark.xdist_group("bundled-runner")
def test_activations_on_the_bundled_model_equal_brute_force(bundled_runner, tmp_path):
    """The GGUF model run through transformers and TransformerBridge, on real text: the pass's
    evidence and records against every activation of the plain Hugging Face model, fully sorted."""
    from engine.activations.corpus import default_corpus
    from engine.activations.documents import Corpus
    from engine.activations.job import ActivationJob
    from engine.data.evidence_records import activation_records
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ActivationSettings, ScanSettings
    from tests.helpers.activation_reference import (
        assert_cases_match,
        assert_examples_match,
        reference_evidence,
    )

    corpus = Corpus("manual", default_corpus().documents[:3])
    engine = NeuronEngine.beside(bundled_runner, EngineOptions(device="cpu", cache_dir=tmp_path / "cache"))
    settings = ActivationSettings(context=200, examples=3, lift_positions=20, max_tokens=600)
    got = ActivationJob(engine, [29], corpus, settings, ScanSettings()).run()[29]
    bridge, tokenizer, _ = engine.activation_model()
    forms = engine.token_forms(49152)
    ref = reference_evidence(
        bridge.original_model, tokenizer, corpus.documents, 29, 200, 10, 20, 20, 600, forms=forms
    )
    assert got.n_positions == 600
    # Two code paths (hooks on the bridge, the plain model) round differently: near-equal
    # activations may swap places, so examples are compared tie-aware.
    for pole in ("positive", "negative"):
        ref_pole = ref[pole] | {name: ref[name] for name in ("acts", "doc", "position", "token_ids")}
        assert_examples_match(got.pole(pole), ref_pole, 20, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.pole(pole).density, ref[pole]["density"], atol=0)
    # SwiGLU: about half of the activity is negative (the negative pole is not a rounding artefact).
    assert 0.3 < got.negative.density.mean() < 0.7
    assert_cases_match(got.cases, ref, rtol=1e-4, atol=1e-5)
    records = list(activation_records("SmolLM2", engine.vocabulary, got))
    assert len(records) == 1536 and all("⟦" in e["context"] for r in records[:50] for e in r["examples"])
    assert all(e["activation"] < 0 for r in records[:50] for e in r["negative"]["examples"])
    assert set(records[0]["cases"]) == {"gate+up+", "gate+up-", "gate-up+", "gate-up-"}
    assert abs(sum(records[0]["cases"].values()) - 1) < 1e-12


def test_one_layers_pass_on_the_bundled_model_stays_under_1_5_gib(tmp_path):
    """The per-layer pass holds the model, one batch and one layer's state: a process of its own
    (the command line's, layer 29, as the detail's A runs it) peaks under 1.5 GiB of RSS in a fresh
    cache, where the pass scans the layer first (the scan's working memory and its unembedding are
    gone before the model loads). That is the heavier case: with the layer's scan already cached,
    as the explorer has it, the peak is lower (1,333 against 1,400 MiB in a fresh clone)."""
    import subprocess
    import sys

    from tests.helpers.cli import ROOT

    command = [
        sys.executable,
        "-m",
        "tui.cli",
        "activations",
        "--layers",
        "29",
        "--max-tokens",
        "600",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(tmp_path / "l29.jsonl"),
    ]
    # A wrapper of its own, so that the high-water mark is this child's only.
    wrapper = (
        "import resource, subprocess, sys; "
        f"done = subprocess.run({command!r}, capture_output=True, text=True); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "print(done.stderr[-2000:], file=sys.stderr)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", wrapper],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    code, peak_kib = map(int, ran.stdout.split())
    assert code == 0, ran.stderr
    assert peak_kib < 1.5 * 2**20, f"peak RSS {peak_kib / 1024:.0f} MiB"


@pytest.mark.xdist_group("bundled-transformers")
def test_the_bundled_gguf_read_a_tensor_at_a_time_equals_transformers_own_load(transformers_bundled):
    """The runnable model is read from the GGUF file a tensor at a time (its load no longer holds
    the file's whole metadata and a second state dict at once): every parameter and the logits
    equal, bit for bit, what transformers' own GGUF loader builds."""
    import torch

    from engine.sources.gguf_model import load_gguf_model

    ours = load_gguf_model(bundled_model_path())
    theirs = transformers_bundled
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    assert [name for name in mine if not torch.equal(mine[name], reference[name])] == []
    tokens = torch.randint(0, ours.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(tokens).logits, theirs(tokens).logits)
