"""A layer of experts scanned an expert at a time, and its parts joined into one layer result.

Every per-neuron number of a scan depends on that neuron's row alone, so scanning the experts one
by one and laying their rows end to end (engine.data.experts' flat order) gives the numbers a scan
of the whole layer would give. What spans the layer is joined here: each token's best neurons (the
best of every expert's candidates), coverage's best neuron per unit norm (the best over experts),
and the histogram window, which is fixed before the first expert from the largest row norm of the
layer so that every expert's counts use the same bins.

Only one expert's rows are held (in float32) at a time, beside the projected unembedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from engine.data.experts import ExpertLabel, LayerExperts
from engine.data.results import LayerResult, expert_groups_array
from engine.errors import ScanCancelled
from engine.scan.layer_scan import TOKEN_MARGIN, CancelCheck, ProgressCallback, scan_shrinking_on_oom
from engine.scan.projection import ProjectedUnembed

ReadExpert = Callable[[ExpertLabel], np.ndarray]  # an expert's W_out rows [d_expert, d_model]

_PER_NEURON = (
    "top_ids top_dots promote_ids promote_dots suppress_ids suppress_dots max_dot norm mean std skew "
    "kurtosis score_hist"
).split()


def largest_row_norm(
    experts: LayerExperts, read: ReadExpert, transport: np.ndarray | None, cancelled: CancelCheck | None
) -> float:
    """The largest |w| (|J_l w| under a lens) over every expert of the layer, in float64."""
    largest = 0.0
    for group in experts.groups:
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        rows = torch.from_numpy(read(group.expert)).double()
        if transport is not None:
            rows = rows @ torch.from_numpy(transport).T
        largest = max(largest, float(rows.norm(dim=1).max()))
    return largest


def scan_experts(
    layer: int,
    experts: LayerExperts,
    read: ReadExpert,
    unembed: ProjectedUnembed,
    settings,
    chunk_tokens: int | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    on_shrink: Callable[[int], None] | None = None,
    transport: np.ndarray | None = None,
) -> LayerResult:
    """The layer's scan, one expert at a time; ``progress`` counts tokens over all experts."""
    cosine = unembed.projection.cosine
    row_scale = 1.0 if cosine else largest_row_norm(experts, read, transport, cancelled)
    parts: list[LayerResult] = []
    total = len(experts.groups) * unembed.d_vocab
    for index, group in enumerate(experts.groups):
        done_before = index * unembed.d_vocab

        def report(done: int, _total: int, before: int = done_before) -> None:
            if progress is not None:
                progress(before + done, total)

        rows = read(group.expert)
        part = scan_shrinking_on_oom(
            layer, rows, unembed, settings, chunk_tokens, report, cancelled, on_shrink, transport, row_scale
        )
        parts.append(part)
        del rows
    return join_experts(parts, experts, settings.token_top_n)


def join_experts(parts: list[LayerResult], experts: LayerExperts, token_top_n: int) -> LayerResult:
    """The experts' results as one layer's, neurons in flat order."""
    tops = {part.score_hist_top for part in parts}
    assert len(tops) == 1, "the experts of a layer share one histogram window"
    joined: dict[str, Any] = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _PER_NEURON}
    offsets = [group.start for group in experts.groups]
    token_neurons, token_dots = _join_token_candidates(parts, offsets, token_top_n + TOKEN_MARGIN)
    unit_best = np.stack([part.token_unit_best for part in parts])  # [experts, d_vocab]
    winner = np.argmax(unit_best, axis=0)  # the first expert on a tie, as a single scan's argmax
    best_neuron = np.stack([p.token_unit_best_neuron + off for p, off in zip(parts, offsets, strict=True)])
    columns = np.arange(unit_best.shape[1])
    return replace(
        parts[0],
        **joined,
        token_neurons=token_neurons,
        token_dots=token_dots,
        token_unit_best=unit_best[winner, columns],
        token_unit_best_neuron=best_neuron[winner, columns].astype(np.int32),
        expert_groups=expert_groups_array(experts),
    )


def _join_token_candidates(
    parts: list[LayerResult], offsets: list[int], keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each token's best ``keep`` neurons by fast |dot| over every expert's own candidates."""
    shifted = [part.token_neurons.astype(np.int64) + off for part, off in zip(parts, offsets, strict=True)]
    neurons = np.concatenate(shifted, axis=1)
    dots = np.concatenate([part.token_dots for part in parts], axis=1)
    keep = min(keep, neurons.shape[1])
    order = np.argsort(-np.abs(dots), axis=1, kind="stable")[:, :keep]
    return (
        np.take_along_axis(neurons, order, axis=1).astype(np.int32),
        np.take_along_axis(dots, order, axis=1),
    )
