"""Per neuron of one layer, what the activation pass keeps while it reads the corpus: the top
examples, the histogram of activations and how many positions were positive.

Everything merges exactly: the top examples by (activation descending, global index ascending),
the counts by addition. So batches, resumed runs and processes can be combined in any grouping and
give the same state as one pass in order.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from engine.score_histogram import KEY_SHIFT, MANTISSA_BITS, SIGN_KEY

# Activation histograms: a fixed window of octaves below 2^ACT_TOP_POWER (larger values fall in the
# outermost bins, smaller ones next to zero), in engine.score_histogram's bin layout.
ACT_OCTAVES = 32
ACT_TOP_POWER = 12
ACT_TOP = 127 + ACT_TOP_POWER  # the window's upper end as a biased float32 exponent
_ACT_PER_SIGN = ACT_OCTAVES << MANTISSA_BITS
_ACT_LOW = (ACT_TOP - ACT_OCTAVES) << MANTISSA_BITS


def rank_examples(values: torch.Tensor, index: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``keep`` best (value, index) pairs: larger value first, ties by lower index.
    Empty slots are (-inf, -1) and sort last."""
    sentinel = torch.where(index < 0, torch.iinfo(torch.int64).max, index)
    order = torch.argsort(sentinel, dim=1, stable=True)
    values, index = values.gather(1, order), index.gather(1, order)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :keep]
    return values.gather(1, order), index.gather(1, order)


class LayerActivationState:
    """Running per-neuron state of one layer; ``update`` takes a batch's valid positions."""

    def __init__(self, d_mlp: int, keep: int, device: torch.device):
        self.keep = keep
        self.values = torch.full((d_mlp, keep), -torch.inf, device=device)
        self.index = torch.full((d_mlp, keep), -1, dtype=torch.int64, device=device)
        self.positive = torch.zeros(d_mlp, dtype=torch.int64, device=device)
        self.hist_counts = torch.zeros((2 * _ACT_PER_SIGN, d_mlp), dtype=torch.int32, device=device)
        self._one = torch.ones((1, 1), dtype=torch.int32, device=device)
        self._full = False  # every neuron holds keep examples

    def update(self, activations: torch.Tensor, index: torch.Tensor) -> None:
        """``activations`` [positions, d_mlp] float32 at global ``index`` [positions] (ascending)."""
        activations = activations.float().contiguous()
        self.positive += (activations > 0).sum(0)
        self._count_bins(activations)
        # Only entries at or above the bar can enter (ties at the bar may still enter). Once the
        # state is full the bar is its keep-th value; until then it is the batch's keep-th value.
        bar = self.values[:, -1]
        if not self._full and activations.shape[0] >= self.keep:
            bar = torch.maximum(bar, activations.topk(self.keep, dim=0).values[-1])
        rows, neurons = (activations >= bar).nonzero(as_tuple=True)
        if rows.numel() == 0:
            return
        counts = torch.bincount(neurons, minlength=self.values.shape[0])
        width = int(counts.max())
        # Scatter the entrants into a dense [d_mlp, width] block, padded with empty slots.
        order = torch.argsort(neurons, stable=True)
        neurons, rows = neurons[order], rows[order]
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(neurons.numel(), device=neurons.device) - start[neurons]
        new_values = torch.full((self.values.shape[0], width), -torch.inf, device=self.values.device)
        new_index = torch.full(
            (self.values.shape[0], width), -1, dtype=torch.int64, device=self.values.device
        )
        new_values[neurons, slot] = activations[rows, neurons]
        new_index[neurons, slot] = index[rows]
        self.values, self.index = rank_examples(
            torch.cat([self.values, new_values], 1), torch.cat([self.index, new_index], 1), self.keep
        )
        self._full = self._full or bool((self.index[:, -1] >= 0).all())

    def _count_bins(self, activations: torch.Tensor) -> None:
        keys = torch.bitwise_right_shift(activations.view(torch.int32), KEY_SHIFT)  # negative for < 0
        negative = keys < 0
        step = (keys.bitwise_and_(SIGN_KEY - 1) - _ACT_LOW).clamp_(0, _ACT_PER_SIGN - 1)
        bins = torch.where(negative, _ACT_PER_SIGN - 1 - step, _ACT_PER_SIGN + step)
        self.hist_counts.scatter_add_(0, bins.long(), self._one.expand(bins.shape))

    def histogram(self) -> np.ndarray:
        """[d_mlp, 2 * ACT_OCTAVES * 8] int32 counts, engine.score_histogram's layout, top ACT_TOP."""
        return self.hist_counts.T.cpu().numpy().astype(np.int32)

    def merge(self, other: LayerActivationState) -> None:
        self.values, self.index = rank_examples(
            torch.cat([self.values, other.values], 1), torch.cat([self.index, other.index], 1), self.keep
        )
        self.positive += other.positive
        self.hist_counts += other.hist_counts
        self._full = bool((self.index[:, -1] >= 0).all())

    # --- a pickle-free byte form, for checkpoints and for gathering across processes ---------
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "values": self.values.cpu().numpy(),
            "index": self.index.cpu().numpy(),
            "positive": self.positive.cpu().numpy(),
            "hist_counts": self.hist_counts.cpu().numpy(),
        }

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        device = self.values.device
        self.values = torch.from_numpy(arrays["values"]).to(device)
        self.index = torch.from_numpy(arrays["index"]).to(device)
        self.positive = torch.from_numpy(arrays["positive"]).to(device)
        self.hist_counts = torch.from_numpy(arrays["hist_counts"]).to(device)
        self._full = bool((self.index[:, -1] >= 0).all())


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    # Histograms are mostly empty bins. (numpy's stub reads **arrays as allow_pickle.)
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
