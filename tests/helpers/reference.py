"""Float64 reference for a layer scan: the definition, written as plainly as possible."""

from __future__ import annotations

import numpy as np

from engine.settings import Projection


def projected_unembed64(
    unembed: np.ndarray, final_norm: np.ndarray | None, projection: Projection
) -> np.ndarray:
    u = unembed.astype(np.float64)
    centres = getattr(final_norm, "centres", False)
    scale = getattr(final_norm, "scale", final_norm)
    if projection.fold_final_norm:
        u = u * np.asarray(scale, dtype=np.float64)[:, None]
        if centres:  # a LayerNorm removes the mean over d_model: so does its fold
            u = u - u.mean(axis=0, keepdims=True)
    if projection.center_unembed:
        u = u - u.mean(axis=1, keepdims=True)
    if projection.cosine:
        u = u / np.linalg.norm(u, axis=0, keepdims=True)
    return u


def reference_scores(
    w_out: np.ndarray, unembed: np.ndarray, final_norm: np.ndarray | None, projection: Projection
) -> np.ndarray:
    w = w_out.astype(np.float64)
    if projection.cosine:
        w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return w @ projected_unembed64(unembed, final_norm, projection)


def _top_k(key: np.ndarray, k: int, axis: int = 1) -> np.ndarray:
    """Indices of the k largest ``key`` values along ``axis``, descending, ties by lower index."""
    if axis == 0:
        return _top_k(key.T, k, 1).T
    if k >= key.shape[1]:
        return np.argsort(-key, axis=1, kind="stable")
    part = np.argpartition(-key, k - 1, axis=1)[:, :k]
    part.sort(axis=1)
    order = np.argsort(-np.take_along_axis(key, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def reference_layer(
    w_out, unembed, final_norm, projection: Projection, k: int, n: int
) -> dict[str, np.ndarray]:
    scores = reference_scores(w_out, unembed, final_norm, projection)
    top = _top_k(np.abs(scores), k)
    promote = _top_k(scores, k)
    suppress = _top_k(-scores, k)
    mean = scores.mean(axis=1)
    centred = scores - mean[:, None]
    m2 = (centred**2).mean(axis=1)
    token_order = _top_k(np.abs(scores).T, n)  # [vocab, n]
    return {
        "scores": scores,
        "top_ids": top,
        "top_dots": np.take_along_axis(scores, top, 1),
        "promote_ids": promote,
        "promote_dots": np.take_along_axis(scores, promote, 1),
        "suppress_ids": suppress,
        "suppress_dots": np.take_along_axis(scores, suppress, 1),
        "max_dot": np.abs(scores).max(axis=1),
        "norm": np.linalg.norm(w_out.astype(np.float64), axis=1),
        "mean": mean,
        "std": np.sqrt(m2),
        "skew": np.einsum("ij,ij,ij->i", centred, centred, centred) / scores.shape[1] / m2**1.5,
        "kurtosis": np.einsum("ij,ij,ij,ij->i", centred, centred, centred, centred) / scores.shape[1] / m2**2,
        "token_neurons": token_order,
        "token_dots": np.take_along_axis(scores.T, token_order, 1),
    }
