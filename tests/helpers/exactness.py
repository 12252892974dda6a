"""Assertions that a scan equals the float64 reference: ids identical up to exact ties, values
within 1e-5 relative."""

from __future__ import annotations

import numpy as np

RTOL = 1e-5


def assert_ranked_equal(
    ids: np.ndarray, dots: np.ndarray, ref_scores: np.ndarray, ref_ids: np.ndarray, key
) -> None:
    """``ids`` may differ from ``ref_ids`` only between tokens whose reference scores tie exactly."""
    ref_dots = np.take_along_axis(ref_scores, ref_ids, 1)
    np.testing.assert_allclose(dots, ref_dots, rtol=RTOL, atol=0)
    got_scores = np.take_along_axis(ref_scores, ids.astype(np.int64), 1)
    np.testing.assert_array_equal(key(got_scores), key(ref_dots))  # same values at each rank
    mismatch = ids != ref_ids
    if mismatch.any():
        np.testing.assert_array_equal(got_scores[mismatch], ref_dots[mismatch])  # exact ties only


def assert_layer_matches(result, ref: dict) -> None:
    """The result's first k tokens of each list (k = the reference's) and every statistic."""
    scores, k = ref["scores"], ref["top_ids"].shape[1]
    assert_ranked_equal(result.top_ids[:, :k], result.top_dots[:, :k], scores, ref["top_ids"], np.abs)
    same = lambda x: x  # noqa: E731
    assert_ranked_equal(
        result.promote_ids[:, :k], result.promote_dots[:, :k], scores, ref["promote_ids"], same
    )
    assert_ranked_equal(
        result.suppress_ids[:, :k], result.suppress_dots[:, :k], scores, ref["suppress_ids"], same
    )
    np.testing.assert_allclose(result.max_dot, ref["max_dot"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(result.norm, ref["norm"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(result.std, ref["std"], rtol=RTOL, atol=0)
    # The mean can be ~0 (centred unembedding): compare on the scale of the scores.
    np.testing.assert_allclose(result.mean, ref["mean"], rtol=RTOL, atol=1e-9 * ref["std"].max())
    # skew is dimensionless and often ~0: relative error is meaningless there, so allow 1e-5 absolute too.
    np.testing.assert_allclose(result.skew, ref["skew"], rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(result.kurtosis, ref["kurtosis"], rtol=RTOL, atol=0)
    n = ref["token_neurons"].shape[1]
    candidates = result.token_neurons
    for token in range(scores.shape[1]):
        assert set(ref["token_neurons"][token]) <= set(candidates[token]), (
            f"token {token} lost a top-{n} neuron"
        )


def reference_histogram_bins(centred: np.ndarray, top: int) -> np.ndarray:
    """Each float64 centred score's bin, from the definition: bins 1/8 octave wide, a window of
    OCTAVES octaves below 2^(top - 127), smaller magnitudes next to zero, negative values first."""
    from engine.data.score_histogram import BINS_PER_SIGN, MANTISSA_BITS, OCTAVES

    mantissa, exponent = np.frexp(np.abs(centred))  # |d| = mantissa * 2^exponent, mantissa in [0.5, 1)
    sub = np.floor((2 * mantissa - 1) * (1 << MANTISSA_BITS)).astype(np.int64)
    key = ((exponent.astype(np.int64) - 1 + 127) << MANTISSA_BITS) + sub
    step = np.clip(key - ((top - OCTAVES) << MANTISSA_BITS), 0, BINS_PER_SIGN - 1)
    step[centred == 0] = 0
    return np.where(centred < 0, BINS_PER_SIGN - 1 - step, BINS_PER_SIGN + step)


def assert_histogram_matches(result, scores: np.ndarray) -> None:
    """Counts sum to the vocabulary, and differ from the float64 binning only by tokens that lie
    within float32 rounding (1e-5 of the neuron's std) of a bin edge."""
    from engine.data.score_histogram import BINS_PER_SIGN, bin_edges

    d_vocab = scores.shape[1]
    assert (result.score_hist.sum(axis=1) == d_vocab).all()
    centred = scores - scores.mean(axis=1, keepdims=True)
    bins = reference_histogram_bins(centred, result.score_hist_top)
    edges = bin_edges(result.score_hist_top)[1:-1]
    for neuron in range(scores.shape[0]):
        expected = np.bincount(bins[neuron], minlength=2 * BINS_PER_SIGN)
        distance = np.abs(centred[neuron][:, None] - edges[None, :]).min(axis=1)
        ambiguous = int((distance <= 1e-5 * centred[neuron].std()).sum())
        moved = int(np.abs(result.score_hist[neuron] - expected).sum())
        assert moved <= 2 * ambiguous, f"neuron {neuron}: {moved} counts moved, {ambiguous} tokens near edges"
