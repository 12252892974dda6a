"""One layer of two checkpoints, neuron by neuron, from both weights and both derived scans
(engine.data.diff says what each number means)."""

from __future__ import annotations

import time

import numpy as np

from engine.data.diff import LayerDiff
from engine.data.neurons import LayerNeurons
from engine.data.progress import ProgressListener, ScanProgress


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row by row, the Jaccard index of two [n, k] id sets."""
    out = np.empty(a.shape[0])
    for row in range(a.shape[0]):
        first, second = set(a[row].tolist()), set(b[row].tolist())
        out[row] = len(first & second) / len(first | second)
    return out


def row_cosines(w_a: np.ndarray, w_b: np.ndarray) -> np.ndarray:
    """cos of each pair of rows, in float64 (NaN for a zero row)."""
    a, b = w_a.astype(np.float64), w_b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.where(norms > 0, np.einsum("ij,ij->i", a, b) / norms, np.nan)
    # Rounding can carry |cos| of parallel rows a few ulps past 1 (1.0000000000000002).
    return np.clip(cosines, -1.0, 1.0)


def layer_diff(w_a, w_b, a: LayerNeurons, b: LayerNeurons, k: int) -> LayerDiff:
    """The diff of one layer from both weights and both derived scans (null baselines known).
    ``w_a``, ``w_b``: each model's W_out rows in the same blocks, one after the other (the whole
    layer, or a layer of experts an expert at a time)."""
    if a.null_z is None or b.null_z is None:
        raise ValueError("both scans need their null baselines")
    ra, rb = a.result, b.result
    same_top = (ra.top_ids[:, 0] == rb.top_ids[:, 0]) & (
        np.sign(ra.top_dots[:, 0]) == np.sign(rb.top_dots[:, 0])
    )
    return LayerDiff(
        layer=ra.layer,
        cosine=np.concatenate([row_cosines(x, y) for x, y in zip(w_a, w_b, strict=True)]),
        max_dot_change=rb.max_dot - ra.max_dot,
        null_z_change=b.null_z - a.null_z,
        promote_jaccard=_jaccard(ra.promote_ids[:, :k], rb.promote_ids[:, :k]),
        suppress_jaccard=_jaccard(ra.suppress_ids[:, :k], rb.suppress_ids[:, :k]),
        top_kept=same_top,
    )


class PairProgress:
    """Both models' scans of one layer, told to one listener as one piece of work: their loading
    as it is, this model's scanning as the first half and the other's as the second, and one
    "done" (``done``) once the diff is made, however many of the scans were cached."""

    def __init__(self, layer: int, listener: ProgressListener | None):
        self.layer = layer
        self.listener = listener
        self.products = ""
        self.started = time.perf_counter()

    def first(self, event: ScanProgress) -> None:
        self._pass_on(event, 0)

    def second(self, event: ScanProgress) -> None:
        self._pass_on(event, 1)

    def _pass_on(self, event: ScanProgress, half: int) -> None:
        if self.listener is None:
            return
        if event.stage == "loading":
            self.listener(event)
        elif event.stage == "scanning":
            done = half * event.total + event.done
            self.listener(ScanProgress("scanning", self.layer, done, 2 * event.total, event.seconds))
        elif event.stage == "done" and not self.products:
            self.products = event.products

    def done(self, d_mlp: int) -> None:
        if self.listener is not None:
            seconds = time.perf_counter() - self.started
            self.listener(ScanProgress("done", self.layer, d_mlp, d_mlp, seconds, self.products))
