"""Each neuron's own scale, so that a probe ranks neurons by how hard each fires for itself and not by
raw activation (in the bundled model, L28/N1095 sits at +28 to +45 on every token and topped every
ranking).

A neuron's **relative activation** at a position is its activation divided by its scale, sign kept;
a probe ranks by its absolute value (a negative activation writes -W_out: the negative pole is a
neuron of its own). The scale is, in order of preference:

- **corpus**: the neuron's ``SCALE_QUANTILE`` quantile of |activation| over the corpus the pass
  read, from the evidence's activation histogram (``LayerActivations.act_hist``: log-spaced bins,
  each 1/8 of a power of two wide; the quantile is interpolated linearly inside its bin, so it is
  within 12.5% of the exact one). The 99th percentile lies above the share of positions that open
  a window (1 in 256 at the default context: their activations are on another scale) and rests on
  120 positions already at 12,000 tokens read; a relative activation of 1 is "as hard as on the 1%
  of the corpus where it fires hardest".
- **text** (no corpus evidence for a probed layer): the neuron's level on the rest of the probe
  text: the root mean square of its activations at the text's other positions (position 0 and
  special tokens left out), but at least the layer's median root mean square over the text. It
  needs nothing but the text; a neuron that is large everywhere gets about 1 everywhere; what ranks
  first is where a neuron departs most from its own level on this text, in units of no less than
  the layer's typical level (so a neuron near zero elsewhere does not rank first on noise, and
  one-token texts rank by activation over the layer's typical level). Leaving the position out of
  its own scale keeps the ranking graded: with it in, every neuron that fires on one token only
  would sit at the same ceiling, the square root of the number of tokens. It is coarser than the
  corpus's scale, and the probe says which it used. A scale from the weights alone was not chosen:
  an activation's size depends on the residual stream's statistics, which the weights do not give.

A corpus scale is floored at ``SCALE_FLOOR`` times the layer's median scale (and above zero), so a
neuron that is silent on nearly all of the corpus does not rank first on noise while a rare feature
firing still ranks high.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engine.data.evidence import LayerActivations
from engine.data.score_histogram import MANTISSA_BITS, bin_edges

SCALE_QUANTILE = 0.99
SCALE_FLOOR = 0.01
_SMALLEST = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class NeuronScales:
    """What a probe divides each neuron's activation by: ``kind`` corpus (``layers`` holds each
    probed layer's scales, [d_mlp] float64) or text (computed from the probe's own activations)."""

    kind: Literal["corpus", "text"]
    words: str  # for the probe's header: which scale, and why
    layers: dict[int, np.ndarray] = field(default_factory=dict)  # corpus only


def histogram_quantile(counts: np.ndarray, top: int, quantile: float = SCALE_QUANTILE) -> np.ndarray:
    """Each row's ``quantile`` of |value| from its signed histogram (``engine.data.score_histogram``
    layout, window top ``top``): [units] float64, linear inside the bin that holds it; 0 for a row
    with no counts."""
    counts = np.asarray(counts, dtype=np.float64)
    per_sign = counts.shape[1] // 2
    edges = bin_edges(top, per_sign >> MANTISSA_BITS)[per_sign:]  # magnitudes: 0, then ascending
    magnitude = counts[:, per_sign:] + counts[:, :per_sign][:, ::-1]  # a negative bin mirrors
    cumulative = np.concatenate([np.zeros((counts.shape[0], 1)), np.cumsum(magnitude, axis=1)], axis=1)
    target = quantile * cumulative[:, -1]
    # The bin where the cumulative count first reaches the target (the first non-empty one for 0).
    index = np.clip((cumulative[:, 1:] < target[:, None]).sum(axis=1), 0, per_sign - 1)
    rows = np.arange(counts.shape[0])
    inside = magnitude[rows, index]
    below = cumulative[rows, index]
    share = np.divide(target - below, inside, out=np.zeros_like(target), where=inside > 0)
    result = edges[index] + share * (edges[index + 1] - edges[index])
    return np.where(cumulative[:, -1] > 0, result, 0.0)


def corpus_scale(evidence: LayerActivations) -> np.ndarray:
    """[d_mlp] float64: each neuron's floored ``SCALE_QUANTILE`` quantile of |activation|."""
    return floored(histogram_quantile(evidence.act_hist, evidence.act_hist_top))


def text_scale(values: np.ndarray, marked: np.ndarray, ran: np.ndarray | None = None) -> np.ndarray:
    """[positions, d_mlp] float64: at each position, each neuron's root mean square over the other
    unmarked positions of ``values`` [positions, d_mlp] (over every position when all are marked),
    at least the layer's median root mean square over them all. ``ran`` [positions, d_mlp]: in a
    layer of experts, where each neuron's expert ran; only those positions count (elsewhere its 0
    is not an activation)."""
    values = np.asarray(values, dtype=np.float64)
    kept = ~marked if (~marked).any() else np.ones_like(marked)
    counted = np.broadcast_to(kept[:, None], values.shape)
    if ran is not None:
        counted = counted & ran
    squares = values * values * counted
    total = squares.sum(axis=0)  # [d_mlp]
    n = counted.sum(axis=0)  # [d_mlp] positions each neuron's scale is over
    seen = n > 0
    floor = max(float(np.median(np.sqrt(total[seen] / n[seen]))) if seen.any() else 0.0, _SMALLEST)
    others = total[None, :] - squares  # each position left out of its own scale
    count = np.maximum(n[None, :] - counted, 1)
    return np.maximum(np.sqrt(np.maximum(others, 0.0) / count), floor)


def floored(scales: np.ndarray) -> np.ndarray:
    """At least ``SCALE_FLOOR`` times the median scale, and above zero."""
    floor = max(SCALE_FLOOR * float(np.median(scales)) if scales.size else 0.0, _SMALLEST)
    return np.maximum(scales, floor)
