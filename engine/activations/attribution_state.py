"""Per neuron of one layer, what the corpus pass keeps of the direct logit attribution toward each
position's predicted token (``engine.data.evidence`` defines the columns it gives): how often the
neuron has its layer's largest attribution, the sums of its attribution over the positions where it
fires positive and where it fires negative, and how often one neuron of the layer carries at least
half of the layer's positive total.

Sums are kept as whole numbers of 2^-24 (each attribution rounded once), so that they add up
exactly in any order: batches, resumed runs and processes give the same bits as one pass in order.
"""

from __future__ import annotations

import torch

FIXED_POINT = 2.0**24  # units per 1.0 of attribution in the kept sums
NAMES = ("attr_top1", "attr_pos_sum", "attr_neg_sum", "attr_dominant")


def attribution_counts(d_mlp: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The state's attribution counters, all zero: int64, [d_mlp] each, [1] for the layer's."""
    counts = {name: torch.zeros(d_mlp, dtype=torch.int64, device=device) for name in NAMES[:3]}
    counts["attr_dominant"] = torch.zeros(1, dtype=torch.int64, device=device)
    return counts


def fold_attribution(counts: dict[str, torch.Tensor], dla: torch.Tensor, activations: torch.Tensor) -> None:
    """Add n positions: ``dla`` [n, d_mlp] float64 toward each position's predicted token, the
    activations [n, d_mlp] they came from (their sign says the pole)."""
    best = dla.max(dim=1)  # the first of equal maxima: the lower neuron
    tops = best.indices[best.values > 0]  # a neuron that pushes the token down tops nothing
    counts["attr_top1"] += torch.bincount(tops, minlength=dla.shape[1])
    fixed = torch.round(dla * FIXED_POINT).to(torch.int64)
    zero = torch.zeros((), dtype=torch.int64, device=dla.device)
    counts["attr_pos_sum"] += torch.where(activations > 0, fixed, zero).sum(dim=0)
    counts["attr_neg_sum"] += torch.where(activations < 0, fixed, zero).sum(dim=0)
    positive_total = dla.clamp_min(0).sum(dim=1)
    counts["attr_dominant"] += ((positive_total > 0) & (best.values >= 0.5 * positive_total)).sum()
