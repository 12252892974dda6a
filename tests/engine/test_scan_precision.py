"""bf16 products against the float64 reference: the rounding bound, split operands, adversarial rows.

On a CPU the bf16 product is emulated exactly as CUDA computes it (bf16 operands, float32
accumulation), so these tests check the arithmetic the GPU path relies on.
"""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
import torch

from engine.scan.layer_scan import NeuronRows, _product, scan_layer
from engine.scan.precision import ProductPlan, split_bfloat16
from engine.scan.projection import ProjectedUnembed
from engine.settings import Projection
from tests.helpers.exactness import assert_histogram_matches, assert_layer_matches
from tests.helpers.models import random_layer
from tests.helpers.reference import reference_layer, reference_scores

ALL_PROJECTIONS = [Projection(*flags) for flags in itertools.product([False, True], repeat=3)]
CPU = torch.device("cpu")


_random = partial(random_layer, d_model=48, d_mlp=120, d_vocab=2200)


def _as_bf16(array: np.ndarray) -> np.ndarray:
    return torch.from_numpy(array).bfloat16().float().numpy()


def _scan_bf16(w, u, g, projection, top_k=10, token_top_n=8, chunk_tokens=300):
    unembed = ProjectedUnembed(u, g, projection, CPU, torch.bfloat16)
    return scan_layer(3, w, unembed, top_k, token_top_n, chunk_tokens=chunk_tokens)


@pytest.mark.parametrize("projection", ALL_PROJECTIONS, ids=lambda p: p.label)
def test_bf16_products_of_float32_inputs_equal_the_float64_reference(projection):
    """Inputs that are not bf16 are split: ids as float64's, values and every statistic to 1e-5."""
    w, u, g = _random(11)
    result = _scan_bf16(w, u, g, projection)
    assert result.products == "bfloat16 x6 (W_U in 3 parts, W_out in 3 parts)"
    reference = reference_layer(w, u, g, projection, 10, 8)
    assert_layer_matches(result, reference)
    assert_histogram_matches(result, reference["scores"])


def test_bf16_checkpoints_multiply_as_they_are():
    """Weights stored in bf16 are exact bf16 operands: no split, still float64's results."""
    w, u, _ = _random(12)
    w, u = _as_bf16(w), _as_bf16(u)
    result = _scan_bf16(w, u, None, Projection())
    assert result.products == "bfloat16 x1 (exact inputs)"
    reference = reference_layer(w, u, None, Projection(), 10, 8)
    assert_layer_matches(result, reference)
    assert_histogram_matches(result, reference["scores"])


def test_near_ties_at_the_kth_place_rank_as_in_float64():
    """30 tokens whose scores against neuron 0 agree to ~1e-7 relative straddle ranks 5-35: far
    inside bf16's resolution, so only the float64 rescoring (or a full recompute) orders them."""
    rng = np.random.default_rng(13)
    d_model, d_vocab = 40, 3000
    u = rng.standard_normal((d_model, d_vocab)).astype(np.float32)
    target = rng.standard_normal(d_model).astype(np.float32)
    u[:, :5] = target[:, None] * 3.0  # five clear winners
    u[:, 5:35] = target[:, None] * 2.0 + rng.standard_normal((d_model, 30)).astype(np.float32) * 1e-6
    w = np.concatenate([target[None], rng.standard_normal((30, d_model)).astype(np.float32)])
    for k in (5, 10, 20):
        result = _scan_bf16(w, u, None, Projection(), top_k=k)
        assert_layer_matches(result, reference_layer(w, u, None, Projection(), k, 8))


def test_huge_and_tiny_norms_and_dead_rows():
    """Rows 1e15 and 1e-15 times the others, a zero row, and tokens of wildly different norms."""
    w, u, g = _random(14, d_mlp=60, d_vocab=1500)
    w[0] *= 1e15
    w[1] *= 1e-15
    w[2] = 0.0
    u[:, :40] *= 1e6  # a few huge tokens dominate max |u|, so the bound is loose for the rest
    u[:, 40:80] *= 1e-6
    result = _scan_bf16(w, u, g, Projection(), chunk_tokens=256)
    assert_layer_matches(result, reference_layer(w, u, g, Projection(), 10, 8))
    assert result.max_dot[2] == 0.0
    live = np.delete(w, 2, axis=0)  # a unit-norm direction of a zero row is undefined
    gurnee = Projection(True, True, True)
    result = _scan_bf16(live, u, g, gurnee, chunk_tokens=256)
    assert_layer_matches(result, reference_layer(live, u, g, gurnee, 10, 8))


def test_the_bound_holds_for_every_score():
    """|fast - float64| <= coefficient * |w| * max|u| for every score of split and exact operands."""
    rng = np.random.default_rng(15)
    for d_model, exact_inputs in ((64, False), (256, False), (64, True)):
        w = (rng.standard_normal((50, d_model)) * rng.uniform(0.01, 100, (50, 1))).astype(np.float32)
        u = rng.standard_normal((d_model, 700)).astype(np.float32)
        u[:, :5] *= 50.0
        if exact_inputs:
            w, u = _as_bf16(w).astype(np.float32), _as_bf16(u).astype(np.float32)
        unembed = ProjectedUnembed(u, None, Projection(), CPU, torch.bfloat16)
        rows = NeuronRows(torch.from_numpy(w), cosine=False)
        product = _product(unembed, rows, torch.from_numpy(w))
        assert (product.plan.token_parts > 1) is not exact_inputs
        fast = torch.empty((700, 50))
        product.multiply(0, 700, fast)
        exact = u.astype(np.float64).T @ w.astype(np.float64).T
        bound = product.plan.coefficient * np.linalg.norm(w.astype(np.float64), axis=1)
        bound = bound * np.linalg.norm(u.astype(np.float64), axis=0).max()
        error = np.abs(fast.numpy().astype(np.float64) - exact)
        assert (error <= bound[None, :]).all()
        # The products are about as accurate as float32 ones (and far better than rounding to bf16).
        float32 = np.abs((u.T @ w.T).astype(np.float64) - exact).max()
        assert error.max() <= 4 * float32
        if not exact_inputs:
            plain = u.T.astype(np.float64) @ _as_bf16(w).T.astype(np.float64)
            assert error.max() * 100 < np.abs(plain - exact).max()


def test_split_parts_and_coefficients():
    values = torch.tensor([1.0, 1.0 + 2**-10, 3.14159265, -1e-30, 0.0], dtype=torch.float32)
    split = split_bfloat16(values)
    assert len(split.parts) == 3 and split.exact  # three bf16 parts hold any normal float32
    assert torch.equal(sum(part.double() for part in split.parts), values.double())
    # Below bf16's smallest subnormal (2^-133) a part underflows: not exact, off by under 2^-133.
    tiny = split_bfloat16(torch.tensor([2.0**-140, 3.0 * 2**-131], dtype=torch.float32))
    left = torch.tensor([2.0**-140, 3.0 * 2**-131]).double() - sum(p.double() for p in tiny.parts)
    assert not tiny.exact and (left.abs() <= 2.0**-133).all()
    wide = split_bfloat16(values.double() / 3)
    residual = values.double() / 3 - sum(part.double() for part in wide.parts)
    assert not wide.exact and (residual.abs() <= 2.0**-24 * (values.double() / 3).abs() + 2.0**-133).all()
    one = split_bfloat16(split.parts[0].double())
    assert len(one.parts) == 1 and one.exact  # bf16 values are exact
    exact = ProductPlan("bfloat16", 576)
    both = ProductPlan("bfloat16", 576, 3, 3, False, True)
    tokens_only = ProductPlan("bfloat16", 576, 3, 1, True, True)
    assert (exact.terms, both.terms, tokens_only.terms) == (576, 6 * 576, 3 * 576)
    float32 = ProductPlan("float32", 576).coefficient
    # Six products sum six times the terms; what they leave out is of float32's order.
    assert exact.coefficient < both.coefficient < 8 * float32
    assert exact.underflow == 0 and both.underflow > 0


def test_chunking_and_precision_give_the_same_rankings():
    """bf16 and float32 products, any block size: the same exact rankings and values."""
    w, u, g = _random(16)
    float32 = scan_layer(0, w, ProjectedUnembed(u, g, Projection(), CPU, torch.float32), 10, 8)
    for chunk in (1, 37, 2200):
        bf16 = _scan_bf16(w, u, g, Projection(), chunk_tokens=chunk)
        for name in ("top_ids", "top_dots", "promote_ids", "suppress_ids", "max_dot", "mean", "norm"):
            np.testing.assert_array_equal(getattr(bf16, name), getattr(float32, name), err_msg=name)
        assert_histogram_matches(bf16, reference_scores(w, u, g, Projection()))
