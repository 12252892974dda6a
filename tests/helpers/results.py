"""Layer results with random numbers, for tests of code that only reads them (no scan needed)."""

from __future__ import annotations

import numpy as np

from engine.data.results import LayerResult
from engine.data.score_histogram import BINS_PER_SIGN


def random_result(
    layer: int = 0, d_mlp: int = 64, d_vocab: int = 50, k: int = 5, seed: int = 0
) -> LayerResult:
    rng = np.random.default_rng(seed)
    ids = lambda: rng.integers(0, d_vocab, (d_mlp, k)).astype(np.int32)  # noqa: E731
    dots = lambda: rng.standard_normal((d_mlp, k))  # noqa: E731
    return LayerResult(
        layer=layer,
        top_ids=ids(),
        top_dots=dots(),
        promote_ids=ids(),
        promote_dots=dots(),
        suppress_ids=ids(),
        suppress_dots=dots(),
        max_dot=rng.uniform(0.5, 3.0, d_mlp),
        norm=rng.uniform(0.5, 2.0, d_mlp),
        mean=rng.standard_normal(d_mlp) * 0.01,
        std=rng.uniform(0.1, 1.0, d_mlp),
        skew=rng.standard_normal(d_mlp),
        kurtosis=rng.uniform(2.0, 20.0, d_mlp),
        token_neurons=rng.integers(0, d_mlp, (d_vocab, 4)).astype(np.int32),
        token_dots=rng.standard_normal((d_vocab, 4)).astype(np.float32),
        token_unit_best=rng.uniform(0, 1, d_vocab).astype(np.float32),
        token_unit_best_neuron=rng.integers(0, d_mlp, d_vocab).astype(np.int32),
        score_hist=rng.multinomial(d_vocab, np.full(2 * BINS_PER_SIGN, 0.5 / BINS_PER_SIGN), d_mlp).astype(
            np.int32
        ),
        score_hist_top=140,
    )
