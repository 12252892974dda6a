"""Neurons and features side by side: each unit's closest units of the other kind by the cosine of
their write directions (a neuron's W_out row, a feature's decoder direction), in float64."""

from __future__ import annotations

import numpy as np

from engine.data.dictionary import UnitNeighbours

_BLOCK = 4096  # rows of the cosine block computed at once: memory, not results


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float64 (a zero row stays zero)."""
    wide = rows.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    return np.divide(wide, norms, out=np.zeros_like(wide), where=norms > 0)


def closest(layer: int, these: np.ndarray, those: np.ndarray, top: int) -> UnitNeighbours:
    """For each row of ``these`` [n, d], the ``top`` rows of ``those`` [m, d] with the largest
    |cosine| (ties: the lower index), signed."""
    a, b = unit_rows(these), unit_rows(those)
    top = min(top, b.shape[0])
    ids = np.empty((a.shape[0], top), dtype=np.int64)
    cosines = np.empty((a.shape[0], top), dtype=np.float64)
    for start in range(0, a.shape[0], _BLOCK):
        block = a[start : start + _BLOCK] @ b.T
        order = np.argsort(-np.abs(block), axis=1, kind="stable")[:, :top]
        ids[start : start + _BLOCK] = order
        cosines[start : start + _BLOCK] = np.take_along_axis(block, order, 1)
    return UnitNeighbours(layer, ids, cosines)
