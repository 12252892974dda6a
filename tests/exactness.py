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
