"""What a layer's scan reads off each [tokens, neurons] score block, and the three passes that fold a
block in: the compiled pass (``engine.scan.block_pass``: torch.compile, on GPUs by default), the
numba sweeps (``engine.scan.fused_block``: the CPU's pass) and the eager pass (the reference, and
the fallback anywhere). All three fill the same ``LayerTallies``:

- per token: its best neurons by |score| and the neuron meeting it hardest per unit norm;
- per neuron: running candidates for the largest and the most negative scores, the sums of
  centred powers (float64) and the histogram counts of the centred scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.scan import fused_block
from engine.scan.block_pass import COMPILED
from engine.scan.histogram_pass import HistogramAccumulator


class RunningExtremes:
    """Per neuron, the ``keep`` largest values seen so far (with their token ids).

    A block entry can only enter when it beats the neuron's current ``keep``-th value, so after the
    first block only a handful of entries per neuron are ever sorted.
    """

    def __init__(self, n_neurons: int, keep: int, device: torch.device):
        self.keep = keep
        self.values = torch.full((n_neurons, keep), -torch.inf, device=device)
        self.ids = torch.full((n_neurons, keep), -1, dtype=torch.long, device=device)
        self.filled = False
        # Entries that beat the threshold wait here and are merged in batches: a merge costs about
        # as much as the state it re-sorts, and the threshold only gets stricter with each merge.
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_count = 0

    @property
    def threshold(self) -> torch.Tensor:
        """Per neuron, what a new value must beat to enter."""
        return self.values[:, -1]

    def update(self, block: torch.Tensor, first_token: int, negated: bool = False) -> None:
        """Fold in ``block`` [tokens, neurons] whose row r is token ``first_token + r`` (its
        negation when ``negated``: the test is then turned around instead of negating the block)."""
        if not self.filled:
            width = min(self.keep, block.shape[0])
            values, rows = (-block if negated else block).topk(width, dim=0)  # [width, neurons]
            self._merge_dense(values.T, rows.T + first_token)
            self.filled = width == self.keep
            return
        beats = block < -self.threshold if negated else block > self.threshold
        rows, neurons = beats.nonzero(as_tuple=True)
        if rows.numel():
            values = block[rows, neurons]
            self._pending.append((neurons, -values if negated else values, rows + first_token))
            self._pending_count += rows.numel()
            if self._pending_count >= self.values.numel():
                self.flush()

    def flush(self) -> None:
        """Merge the waiting entries into the state."""
        if self._pending:
            neurons, values, ids = (torch.cat(parts) for parts in zip(*self._pending))
            self._pending, self._pending_count = [], 0
            self._merge_sparse(neurons, values, ids)

    def _merge_dense(self, values: torch.Tensor, ids: torch.Tensor) -> None:
        merged_values = torch.cat([self.values, values], dim=1)
        merged_ids = torch.cat([self.ids, ids], dim=1)
        self.values, position = merged_values.topk(self.keep, dim=1)
        self.ids = merged_ids.gather(1, position)

    def _merge_sparse(self, neurons: torch.Tensor, values: torch.Tensor, ids: torch.Tensor) -> None:
        n_neurons = self.values.shape[0]
        all_neurons = torch.cat(
            [torch.arange(n_neurons, device=neurons.device).repeat_interleave(self.keep), neurons]
        )
        all_values = torch.cat([self.values.flatten(), values])
        all_ids = torch.cat([self.ids.flatten(), ids])
        # Group by neuron, best first within a group, then keep each group's first ``keep``.
        order = torch.argsort(all_values, descending=True, stable=True)
        order = order[torch.argsort(all_neurons[order], stable=True)]
        counts = torch.bincount(all_neurons, minlength=n_neurons)
        group_start = torch.cumsum(counts, 0) - counts
        sorted_neurons = all_neurons[order]
        rank = torch.arange(order.numel(), device=order.device) - group_start[sorted_neurons]
        kept = rank < self.keep
        slot = (
            sorted_neurons[kept] * self.keep + rank[kept]
        )  # every slot is filled: each neuron brings its state
        values = torch.empty(n_neurons * self.keep, dtype=self.values.dtype, device=self.values.device)
        ids = torch.empty(n_neurons * self.keep, dtype=self.ids.dtype, device=self.ids.device)
        values[slot] = all_values[order][kept]
        ids[slot] = all_ids[order][kept]
        self.values, self.ids = values.view(n_neurons, self.keep), ids.view(n_neurons, self.keep)


@dataclass
class LayerTallies:
    """Everything a layer's blocks are folded into (see the module's docstring). ``mean_fast`` and
    ``inverse_norm`` [d_mlp] (float32) are read: each neuron's mean score, by which scores are
    centred, and 1/|w| (or 1 under --cosine), by which the per-unit best is measured."""

    largest: RunningExtremes
    smallest: RunningExtremes  # of the negated scores
    token_ids: torch.Tensor  # [d_vocab, token_keep] each token's best neurons by |score|
    token_dots: torch.Tensor  # their scores
    unit_best: torch.Tensor  # [d_vocab] the largest |score| per unit norm
    unit_best_neuron: torch.Tensor  # and its neuron
    sums: torch.Tensor  # [3, d_mlp] float64 sums of centred ^2, ^3, ^4
    histogram: HistogramAccumulator
    mean_fast: torch.Tensor
    inverse_norm: torch.Tensor

    @classmethod
    def empty(
        cls,
        d_vocab: int,
        candidates: int,
        token_keep: int,
        histogram: HistogramAccumulator,
        mean_fast: torch.Tensor,
        inverse_norm: torch.Tensor,
    ) -> LayerTallies:
        d_mlp, device = mean_fast.shape[0], mean_fast.device
        return cls(
            largest=RunningExtremes(d_mlp, candidates, device),
            smallest=RunningExtremes(d_mlp, candidates, device),
            token_ids=torch.empty((d_vocab, token_keep), dtype=torch.long, device=device),
            token_dots=torch.empty((d_vocab, token_keep), device=device),
            unit_best=torch.empty(d_vocab, device=device),
            unit_best_neuron=torch.empty(d_vocab, dtype=torch.long, device=device),
            sums=torch.zeros((3, d_mlp), dtype=torch.float64, device=device),
            histogram=histogram,
            mean_fast=mean_fast,
            inverse_norm=inverse_norm,
        )

    @property
    def token_keep(self) -> int:
        return int(self.token_ids.shape[1])


class CompiledFold:
    """One compiled pass over the block (engine.scan.block_pass), then the top-k selections."""

    def __init__(self, tallies: LayerTallies, compiled) -> None:
        self.tallies, self.compiled = tallies, compiled

    def update(self, block: torch.Tensor, start: int, stop: int) -> None:
        t = self.tallies
        magnitude, best_unit, best_neuron, block_sums = self.compiled(
            block, t.mean_fast, t.inverse_norm, t.histogram.window_low, t.histogram.bin_table()
        )
        _, best = magnitude.topk(t.token_keep, dim=1)
        t.token_ids[start:stop] = best
        t.token_dots[start:stop] = block.gather(1, best)
        t.unit_best[start:stop], t.unit_best_neuron[start:stop] = best_unit, best_neuron
        t.largest.update(block, start)
        t.smallest.update(block, start, negated=True)
        t.sums += torch.stack(block_sums)

    def finish(self) -> None:
        pass


class SweepFold:
    """The two numba sweeps (engine.scan.fused_block) read everything off the block, in place."""

    def __init__(self, tallies: LayerTallies) -> None:
        t = self.tallies = tallies
        d_mlp = t.mean_fast.shape[0]
        self.sweeps = fused_block.FusedBlockPass(
            d_mlp, t.largest.keep, t.sums.numpy(), t.histogram.bin_table().numpy()
        )
        self.tokens = (
            t.token_ids.numpy(),
            t.token_dots.numpy(),
            t.unit_best.numpy(),
            t.unit_best_neuron.numpy(),
        )
        self.mean, self.inverse = t.mean_fast.numpy(), t.inverse_norm.numpy()
        self.window_low = int(t.histogram.window_low)

    def update(self, block: torch.Tensor, start: int, stop: int) -> None:
        ids, dots, best, neuron = self.tokens  # the block's rows of the per-token outputs
        tokens = (ids[start:stop], dots[start:stop], best[start:stop], neuron[start:stop])
        self.sweeps.update(block.numpy(), start, self.mean, self.inverse, self.window_low, tokens)

    def finish(self) -> None:
        (pos_values, pos_ids), (neg_values, neg_ids) = self.sweeps.extremes()
        t = self.tallies
        t.largest.values, t.largest.ids = torch.from_numpy(pos_values), torch.from_numpy(pos_ids)
        t.smallest.values, t.smallest.ids = torch.from_numpy(neg_values), torch.from_numpy(neg_ids)


class EagerFold:
    """The reference pass in eager torch, one operation at a time, with scratch of its own."""

    def __init__(self, tallies: LayerTallies, chunk: int) -> None:
        self.tallies = tallies
        d_mlp, device = tallies.mean_fast.shape[0], tallies.mean_fast.device
        self.work = torch.empty((chunk, d_mlp), device=device)
        self.power = torch.empty((chunk, d_mlp), dtype=torch.float64, device=device)
        self.wide = torch.empty((chunk, d_mlp), dtype=torch.float64, device=device)
        self.keys = torch.empty((chunk, d_mlp), dtype=torch.int64, device=device)

    def update(self, block: torch.Tensor, start: int, stop: int) -> None:
        t, size = self.tallies, stop - start
        # Per token: best neurons by |score|, and the best per unit norm (coverage).
        work = self.work[:size]
        torch.abs(block, out=work)
        _, best = work.topk(t.token_keep, dim=1)
        t.token_ids[start:stop] = best
        t.token_dots[start:stop] = block.gather(1, best)
        work.mul_(t.inverse_norm)
        t.unit_best[start:stop], t.unit_best_neuron[start:stop] = work.max(dim=1)

        # Per neuron: candidates for the largest and the most negative scores.
        t.largest.update(block, start)
        t.smallest.update(block, start, negated=True)

        # Per neuron: centred power sums, in float64 (a float32 square overflows past 1.8e19).
        torch.sub(block, t.mean_fast, out=work)
        t.histogram.update(work, self.keys[:size])
        wide, square = self.wide[:size], self.power[:size]
        wide.copy_(work)
        torch.mul(wide, wide, out=square)
        t.sums[0] += square.sum(0)
        t.sums[1] += torch.mul(square, wide, out=wide).sum(0)
        t.sums[2] += torch.mul(square, square, out=square).sum(0)

    def finish(self) -> None:
        pass


BlockFold = CompiledFold | SweepFold | EagerFold


def block_fold(tallies: LayerTallies, chunk: int, device: torch.device, eager: bool = False) -> BlockFold:
    """The pass this device uses: the compiled one where it is ready, the numba sweeps on a CPU,
    else the eager one (or the eager one whatever the device offers: the reference)."""
    if eager:
        return EagerFold(tallies, chunk)
    compiled = COMPILED.get((chunk, tallies.mean_fast.shape[0]), device)
    if compiled is not None:
        return CompiledFold(tallies, compiled)
    if device.type == "cpu" and fused_block.AVAILABLE:
        return SweepFold(tallies)
    return EagerFold(tallies, chunk)
