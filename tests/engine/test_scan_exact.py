"""The scan kernel against the float64 reference, on random inputs."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
import torch

from engine.scan.layer_scan import scan_layer
from engine.scan.projection import ProjectedUnembed
from engine.settings import Projection
from tests.helpers.exactness import assert_histogram_matches, assert_layer_matches
from tests.helpers.models import random_layer
from tests.helpers.reference import reference_layer, reference_scores

ALL_PROJECTIONS = [Projection(*flags) for flags in itertools.product([False, True], repeat=3)]


_random = partial(random_layer, d_model=48, d_mlp=150, d_vocab=2500)


@pytest.mark.parametrize("projection", ALL_PROJECTIONS, ids=lambda p: p.label)
def test_scan_equals_float64_reference(projection):
    w, u, g = _random(1)
    unembed = ProjectedUnembed(u, g, projection, torch.device("cpu"), torch.float32)
    result = scan_layer(4, w, unembed, top_k=10, token_top_n=8, chunk_tokens=37)
    assert result.layer == 4
    reference = reference_layer(w, u, g, projection, 10, 8)
    assert_layer_matches(result, reference)
    assert_histogram_matches(result, reference["scores"])


@pytest.mark.parametrize("chunk_tokens", [1, 7, 25, 30, 1000, 5000])
def test_chunking_does_not_change_results(chunk_tokens):
    w, u, g = _random(2)
    unembed = ProjectedUnembed(u, g, Projection(), torch.device("cpu"), torch.float32)
    baseline = scan_layer(0, w, unembed, 5, 8, chunk_tokens=2500)
    other = scan_layer(0, w, unembed, 5, 8, chunk_tokens=chunk_tokens)
    # Per-token candidates are fast-precision and may reorder near ties; everything reported is exact.
    np.testing.assert_allclose(other.kurtosis, baseline.kurtosis, rtol=1e-5)
    for name in ("top_ids", "top_dots", "promote_ids", "suppress_dots", "max_dot"):
        np.testing.assert_array_equal(getattr(other, name), getattr(baseline, name))
    # Histogram counts are fast-precision too: a token on a bin edge may fall either side.
    assert_histogram_matches(other, reference_scores(w, u, g, Projection()))


def test_near_ties_and_clusters_are_ranked_exactly():
    """Tokens whose scores differ by less than float32 resolution still rank as in float64."""
    rng = np.random.default_rng(3)
    d_model, d_vocab = 64, 3000
    u = rng.standard_normal((d_model, d_vocab)).astype(np.float32)
    base = u[:, :1].copy()
    # 40 near-copies of one token's column: many scores agree to ~1e-7 relative.
    u[:, 1:41] = base + rng.standard_normal((d_model, 40)).astype(np.float32) * 1e-6
    w = np.concatenate([base.T, rng.standard_normal((20, d_model)).astype(np.float32)]).astype(np.float32)
    unembed = ProjectedUnembed(u, None, Projection(), torch.device("cpu"), torch.float32)
    result = scan_layer(0, w, unembed, top_k=12, token_top_n=8)
    assert_layer_matches(result, reference_layer(w, u, None, Projection(), 12, 8))


def test_exact_ties_and_zero_rows():
    rng = np.random.default_rng(4)
    u = rng.standard_normal((16, 500)).astype(np.float32)
    u[:, 10] = u[:, 3]  # two identical tokens: an exact tie
    w = rng.standard_normal((30, 16)).astype(np.float32)
    w[5] = 0.0  # a dead neuron: every score ties at 0
    unembed = ProjectedUnembed(u, None, Projection(), torch.device("cpu"), torch.float32)
    result = scan_layer(0, w, unembed, top_k=5, token_top_n=4)
    ref = reference_layer(w, u, None, Projection(), 5, 4)
    assert_layer_matches(result, ref)
    assert result.max_dot[5] == 0.0


def test_top_k_larger_than_vocabulary_and_tiny_layers():
    rng = np.random.default_rng(5)
    u = rng.standard_normal((8, 12)).astype(np.float32)
    w = rng.standard_normal((3, 8)).astype(np.float32)
    unembed = ProjectedUnembed(u, None, Projection(), torch.device("cpu"), torch.float32)
    result = scan_layer(0, w, unembed, top_k=50, token_top_n=8)
    assert result.top_ids.shape == (3, 12)
    for row in range(3):
        assert sorted(result.top_ids[row]) == list(range(12))
    assert_layer_matches(result, reference_layer(w, u, None, Projection(), 12, 3))


def test_scan_reports_progress_and_can_be_cancelled():
    from engine.errors import ScanCancelled

    w, u, g = _random(7)
    unembed = ProjectedUnembed(u, g, Projection(), torch.device("cpu"), torch.float32)
    seen = []
    scan_layer(
        0, w, unembed, 5, 8, chunk_tokens=1000, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    calls = iter([False, True])
    with pytest.raises(ScanCancelled):
        scan_layer(0, w, unembed, 5, 8, chunk_tokens=50, cancelled=lambda: next(calls))


@pytest.mark.parametrize("projection", [Projection(), Projection(cosine=True)], ids=lambda p: p.label)
def test_per_token_best_unit_alignment(projection):
    w, u, g = _random(9)
    unembed = ProjectedUnembed(u, g, projection, torch.device("cpu"), torch.float32)
    result = scan_layer(0, w, unembed, 5, 8, chunk_tokens=33)
    scores = reference_layer(w, u, g, projection, 5, 8)["scores"]
    unit = (
        np.abs(scores)
        if projection.cosine
        else np.abs(scores) / np.linalg.norm(w.astype(np.float64), axis=1, keepdims=True)
    )
    np.testing.assert_allclose(result.token_unit_best, unit.max(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(result.token_unit_best_neuron, unit.argmax(axis=0))


@pytest.mark.parametrize("projection", [Projection(), Projection(True, True, True)], ids=lambda p: p.label)
def test_compiled_block_pass_equals_the_reference_and_the_eager_pass(projection, monkeypatch, tmp_path):
    """With the compiled pass (torch.compile): the same float64 reference, and the
    eager scan's rankings, token lists, coverage and histogram exactly; moments to 1e-6."""
    import shutil

    from engine.scan.block_pass import COMPILED

    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler: torch.compile cannot build CPU kernels here (scans stay eager)")
    w, u, g = _random(5, d_model=40, d_mlp=160, d_vocab=3000)
    unembed = ProjectedUnembed(u, g, projection, torch.device("cpu"), torch.float32)
    monkeypatch.setenv("NEURON_TUI_COMPILE", "off")
    eager = scan_layer(2, w, unembed, top_k=10, token_top_n=8, chunk_tokens=256)
    monkeypatch.setenv("NEURON_TUI_COMPILE", "on")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "compiled"))
    compiled = scan_layer(2, w, unembed, top_k=10, token_top_n=8, chunk_tokens=256)
    assert COMPILED.get((256, 160), torch.device("cpu")) is not None, "the pass did not compile"
    assert_layer_matches(compiled, reference_layer(w, u, g, projection, 10, 8))
    assert_histogram_matches(compiled, reference_layer(w, u, g, projection, 10, 8)["scores"])
    for name in (
        "top_ids",
        "top_dots",
        "promote_ids",
        "suppress_ids",
        "token_neurons",
        "token_dots",
        "token_unit_best",
        "token_unit_best_neuron",
        "score_hist",
        "max_dot",
        "mean",
    ):
        np.testing.assert_array_equal(getattr(compiled, name), getattr(eager, name), err_msg=name)
    for name in ("std", "skew", "kurtosis"):
        np.testing.assert_allclose(getattr(compiled, name), getattr(eager, name), rtol=1e-6, atol=1e-7)
