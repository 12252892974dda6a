"""The numba sweeps of the CPU scan against the eager pass and the float64 reference."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
import torch

from engine.scan import candidate_scores, fused_block
from engine.scan.layer_scan import scan_layer
from engine.scan.projection import ProjectedUnembed
from engine.settings import Projection
from tests.helpers.exactness import assert_histogram_matches, assert_layer_matches
from tests.helpers.models import random_layer
from tests.helpers.reference import reference_layer

ALL_PROJECTIONS = [Projection(*flags) for flags in itertools.product([False, True], repeat=3)]
CPU = torch.device("cpu")
SAME = (
    "top_ids",
    "promote_ids",
    "suppress_ids",
    "token_neurons",
    "token_dots",
    "token_unit_best",
    "token_unit_best_neuron",
    "score_hist",
    "mean",
    "norm",
)


_random = partial(random_layer, d_model=40, d_mlp=150, d_vocab=2600)


def _eager(monkeypatch, *args, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(fused_block, "AVAILABLE", False)
        return scan_layer(*args, **kwargs)


@pytest.mark.parametrize("projection", ALL_PROJECTIONS, ids=lambda p: p.label)
def test_sweeps_equal_the_eager_pass_and_the_reference(projection, monkeypatch):
    assert fused_block.AVAILABLE, "numba is a dependency: the CPU scan runs its sweeps"
    w, u, g = _random(21)
    unembed = ProjectedUnembed(u, g, projection, CPU, torch.float32)
    swept = scan_layer(1, w, unembed, 10, 8, chunk_tokens=300)
    eager = _eager(monkeypatch, 1, w, unembed, 10, 8, chunk_tokens=300)
    reference = reference_layer(w, u, g, projection, 10, 8)
    assert_layer_matches(swept, reference)
    assert_histogram_matches(swept, reference["scores"])
    for name in SAME:  # the same arithmetic: the same counts, candidates and token lists
        np.testing.assert_array_equal(getattr(swept, name), getattr(eager, name), err_msg=name)
    for name in ("top_dots", "max_dot", "std", "skew", "kurtosis"):  # float64 sums in another order
        np.testing.assert_allclose(getattr(swept, name), getattr(eager, name), rtol=1e-12, atol=1e-13)


def test_the_reference_pass_on_request_is_the_eager_pass(monkeypatch):
    """``eager=True`` (what the benchmarks time the sweeps against) folds the blocks with the eager
    pass though numba is at hand, and gives the reference's numbers."""
    from engine.scan import block_folds

    folded: list[int] = []
    update = block_folds.EagerFold.update
    monkeypatch.setattr(
        block_folds.EagerFold, "update", lambda self, *args: folded.append(1) or update(self, *args)
    )
    w, u, g = _random(24, d_vocab=900)
    unembed = ProjectedUnembed(u, g, Projection(), CPU, torch.float32)
    swept = scan_layer(0, w, unembed, 10, 8, chunk_tokens=300)
    assert not folded
    asked = scan_layer(0, w, unembed, 10, 8, chunk_tokens=300, eager=True)
    assert len(folded) == 3  # one per block
    assert_layer_matches(asked, reference_layer(w, u, g, Projection(), 10, 8))
    for name in SAME:
        np.testing.assert_array_equal(getattr(asked, name), getattr(swept, name), err_msg=name)


@pytest.mark.parametrize("chunk_tokens", [1, 7, 64, 2600])
def test_any_block_size_gives_the_same_results(chunk_tokens):
    w, u, g = _random(22, d_vocab=900)
    unembed = ProjectedUnembed(u, g, Projection(), CPU, torch.float32)
    baseline = scan_layer(0, w, unembed, 10, 8, chunk_tokens=900)
    other = scan_layer(0, w, unembed, 10, 8, chunk_tokens=chunk_tokens)
    # What is reported exactly is the same; the float32 product itself (and so the per-token
    # candidates and the histogram near bin edges) may round differently for another block height.
    for name in ("top_ids", "top_dots", "promote_ids", "suppress_ids", "max_dot", "mean", "norm"):
        np.testing.assert_array_equal(getattr(other, name), getattr(baseline, name), err_msg=name)
    np.testing.assert_allclose(other.kurtosis, baseline.kurtosis, rtol=1e-6)
    assert_layer_matches(other, reference_layer(w, u, g, Projection(), 10, 8))


def test_ties_dead_rows_and_more_neurons_kept_than_exist(monkeypatch):
    """Identical tokens, a zero neuron, tokens with equal |score| for many neurons, and a layer
    narrower than a token's list: ties fall to the lower id, as the reference's order does."""
    rng = np.random.default_rng(23)
    u = rng.standard_normal((16, 700)).astype(np.float32)
    u[:, 10] = u[:, 3]
    u[:, 20] = 0.0  # every neuron scores 0 on this token
    w = rng.standard_normal((12, 16)).astype(np.float32)
    w[5] = 0.0
    unembed = ProjectedUnembed(u, None, Projection(), CPU, torch.float32)
    result = scan_layer(0, w, unembed, top_k=5, token_top_n=20, chunk_tokens=50)
    assert_layer_matches(result, reference_layer(w, u, None, Projection(), 5, 12))
    assert result.token_neurons.shape == (700, 12)
    np.testing.assert_array_equal(result.token_neurons[20], np.arange(12))  # all tie at 0
    assert result.max_dot[5] == 0.0


def test_rescoring_kernel_equals_float64_dots():
    rng = np.random.default_rng(24)
    w = rng.standard_normal((70, 30)).astype(np.float32)
    u = rng.standard_normal((30, 500)).astype(np.float32)
    from engine.scan.layer_scan import NeuronRows

    for cosine in (False, True):
        unembed = ProjectedUnembed(u, None, Projection(cosine=cosine), CPU, torch.float32)
        rows = NeuronRows(torch.from_numpy(w), cosine)
        ids = torch.from_numpy(rng.integers(0, 500, (70, 9)))
        assert not unembed.transforms or cosine
        got = candidate_scores.candidate_scores(rows, unembed, ids, slice(None)).numpy()
        columns = unembed.exact_columns(ids).numpy()
        want = np.einsum("cd,ckd->ck", rows.exact(slice(None)).numpy(), columns)
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


def test_input_side_candidates_swept_equal_merged():
    """The input side's candidates by the numba heaps equal those of torch's chunk-wise top-k."""
    from engine.data.model import ArrayRows
    from engine.scan.input_side import _candidates_merged, _candidates_swept, _Table

    rng = np.random.default_rng(25)
    unit = torch.from_numpy(rng.standard_normal((90, 24)).astype(np.float32))
    table = ArrayRows(rng.standard_normal((9000, 24)).astype(np.float32))
    swept = _candidates_swept(unit, _Table(table, CPU, 4096), 26)
    merged = _candidates_merged(unit, _Table(table, CPU, 4096), 26)
    for (swept_values, swept_ids), (merged_values, merged_ids) in zip(swept, merged):
        np.testing.assert_array_equal(swept_values.numpy(), merged_values.numpy())
        np.testing.assert_array_equal(swept_ids.numpy(), merged_ids.numpy())


def test_a_block_taller_than_the_sweeps_16_bit_counts():
    """70,000 tokens in one block, a dead neuron whose every centred score lands in one bin: the
    sweep's per-block 16-bit counts must not wrap."""
    rng = np.random.default_rng(26)
    u = rng.standard_normal((8, 70_000)).astype(np.float32)
    w = rng.standard_normal((4, 8)).astype(np.float32)
    w[1] = 0.0
    unembed = ProjectedUnembed(u, None, Projection(), CPU, torch.float32)
    result = scan_layer(0, w, unembed, top_k=3, token_top_n=2, chunk_tokens=70_000)
    assert (result.score_hist.sum(axis=1) == 70_000).all()
    assert result.score_hist[1].max() == 70_000
    reference = reference_layer(np.delete(w, 1, axis=0), u, None, Projection(), 3, 2)
    np.testing.assert_allclose(np.delete(result.kurtosis, 1), reference["kurtosis"], rtol=1e-5)
