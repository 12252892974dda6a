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
from engine.runtime.resources import return_freed_memory
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
    joined = JoinedExperts(experts, settings.token_top_n + TOKEN_MARGIN)
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
        del rows
        joined.add(part, group.start)
        del part
        # Each expert's scan frees its blocks; glibc keeps freed heap pages unless asked, and over a
        # layer's 128 experts they would pile up (engine.runtime.resources).
        return_freed_memory()
    return joined.result()


class JoinedExperts:
    """The experts' results folded in one by one, into one layer's (neurons in flat order): only
    the running per-token candidates are held beside the small per-neuron arrays, never every
    expert's [d_vocab, candidates] at once."""

    def __init__(self, experts: LayerExperts, token_keep: int) -> None:
        self.experts, self.token_keep = experts, token_keep
        self.first: LayerResult | None = None
        # Filled in place, expert by expert: joining lists at the end would hold the layer twice.
        self.per_neuron: dict[str, np.ndarray] = {}
        self.token_neurons = self.token_dots = None  # type: np.ndarray | None
        self.unit_best = self.unit_best_neuron = None  # type: np.ndarray | None

    def add(self, part: LayerResult, offset: int) -> None:
        if self.first is None:
            self.first = part
            for name in _PER_NEURON:
                value = getattr(part, name)
                self.per_neuron[name] = np.empty((self.experts.width, *value.shape[1:]), dtype=value.dtype)
        assert part.score_hist_top == self.first.score_hist_top, "one histogram window per layer"
        for name in _PER_NEURON:
            self.per_neuron[name][offset : offset + part.d_mlp] = getattr(part, name)
        neurons = part.token_neurons.astype(np.int64) + offset
        unit_neuron = part.token_unit_best_neuron.astype(np.int64) + offset
        if self.token_neurons is None or self.token_dots is None:
            self.token_neurons, self.token_dots = neurons, part.token_dots
            self.unit_best, self.unit_best_neuron = part.token_unit_best, unit_neuron
            return
        self.token_neurons, self.token_dots = _best_candidates(
            np.concatenate([self.token_neurons, neurons], axis=1),
            np.concatenate([self.token_dots, part.token_dots], axis=1),
            self.token_keep,
        )
        assert self.unit_best is not None and self.unit_best_neuron is not None
        better = part.token_unit_best > self.unit_best  # on a tie the earlier expert keeps it
        self.unit_best = np.where(better, part.token_unit_best, self.unit_best)
        self.unit_best_neuron = np.where(better, unit_neuron, self.unit_best_neuron)

    def result(self) -> LayerResult:
        assert self.first is not None and self.token_neurons is not None and self.token_dots is not None
        assert self.unit_best is not None
        joined: dict[str, Any] = self.per_neuron
        return replace(
            self.first,
            **joined,
            token_neurons=self.token_neurons.astype(np.int32),
            token_dots=self.token_dots,
            token_unit_best=self.unit_best,
            token_unit_best_neuron=np.asarray(self.unit_best_neuron).astype(np.int32),
            expert_groups=expert_groups_array(self.experts),
        )


def _best_candidates(neurons: np.ndarray, dots: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Each token's best ``keep`` candidates by fast |dot| (stable: earlier experts first on ties)."""
    keep = min(keep, neurons.shape[1])
    order = np.argsort(-np.abs(dots), axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(neurons, order, axis=1), np.take_along_axis(dots, order, axis=1)
