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


_BLOCK_ELEMENTS = 1 << 22  # keys ranked at a time: the temporaries stay small


def top_k_ids(key: np.ndarray, k: int, axis: int = 1) -> np.ndarray:
    """Indices of the k largest ``key`` values along ``axis``, descending, ties by lower index:
    exactly the first k of a stable full sort, without sorting whole rows."""
    if axis == 0:
        return top_k_ids(key.T, k, 1).T
    n = key.shape[1]
    if k >= n:
        return np.argsort(-key, axis=1, kind="stable")
    out = np.empty((key.shape[0], k), dtype=np.int64)
    step = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, key.shape[0], step):
        block = key[start : start + step]
        kth = np.partition(block, n - k, axis=1)[:, n - k]  # each row's k-th largest value
        rows, cols = np.nonzero(block >= kth[:, None])  # at least k per row: ties at the k-th too
        order = np.lexsort((cols, -block[rows, cols], rows))  # by row, value descending, index
        rows, cols = rows[order], cols[order]
        first = np.searchsorted(rows, np.arange(block.shape[0]))
        out[start : start + block.shape[0]] = cols[first[:, None] + np.arange(k)]
    return out


def _row_statistics(scores: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each neuron's (row's) lists and moments, a block of rows at a time (every value is computed
    row by row, so the blocks change nothing; they keep the temporaries small)."""
    rows, vocab = scores.shape
    out = {name: np.empty((rows, k), dtype=np.int64) for name in ("top", "promote", "suppress")}
    out |= {name: np.empty(rows) for name in ("max_dot", "mean", "m2", "m3", "m4")}
    step = max(1, _BLOCK_ELEMENTS // vocab)
    for start in range(0, rows, step):
        at = slice(start, start + step)
        block = scores[at]
        magnitude = np.abs(block)
        out["top"][at] = top_k_ids(magnitude, k)
        out["promote"][at] = top_k_ids(block, k)
        out["suppress"][at] = top_k_ids(-block, k)
        out["max_dot"][at] = magnitude.max(axis=1)
        out["mean"][at] = block.mean(axis=1)
        centred = block - out["mean"][at][:, None]
        out["m2"][at] = (centred**2).mean(axis=1)
        out["m3"][at] = np.einsum("ij,ij,ij->i", centred, centred, centred) / vocab
        out["m4"][at] = np.einsum("ij,ij,ij,ij->i", centred, centred, centred, centred) / vocab
    return out


def _token_order(scores: np.ndarray, n: int) -> np.ndarray:
    """Each token's n neurons of largest |score| [vocab, n], a block of tokens at a time."""
    step = max(1, _BLOCK_ELEMENTS // scores.shape[0])
    blocks = (
        np.ascontiguousarray(np.abs(scores[:, start : start + step]).T)
        for start in range(0, scores.shape[1], step)
    )
    return np.concatenate([top_k_ids(block, n) for block in blocks])


def reference_layer(
    w_out, unembed, final_norm, projection: Projection, k: int, n: int
) -> dict[str, np.ndarray]:
    scores = reference_scores(w_out, unembed, final_norm, projection)
    rows = _row_statistics(scores, k)
    top, promote, suppress, m2 = rows["top"], rows["promote"], rows["suppress"], rows["m2"]
    token_order = _token_order(scores, n)  # [vocab, n]
    return {
        "scores": scores,
        "top_ids": top,
        "top_dots": np.take_along_axis(scores, top, 1),
        "promote_ids": promote,
        "promote_dots": np.take_along_axis(scores, promote, 1),
        "suppress_ids": suppress,
        "suppress_dots": np.take_along_axis(scores, suppress, 1),
        "max_dot": rows["max_dot"],
        "norm": np.linalg.norm(w_out.astype(np.float64), axis=1),
        "mean": rows["mean"],
        "std": np.sqrt(m2),
        "skew": rows["m3"] / m2**1.5,
        "kurtosis": rows["m4"] / m2**2,
        "token_neurons": token_order,
        "token_dots": np.take_along_axis(scores.T, token_order, 1),
    }
