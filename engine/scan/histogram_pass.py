"""The scan's side of the per-neuron score histograms (``engine.data.score_histogram`` says what the
bins are).

Per block, each centred float32 score's bit pattern shifted right gives a 12-bit key (sign,
exponent, top mantissa bits); one ``scatter_add`` counts the keys per neuron. Keys are mapped to the
window's bins once per layer, at the end, so the per-block work is a shift, a mask and the scatter.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.data.score_histogram import (
    BINS_PER_SIGN,
    KEY_MASK,
    KEY_SHIFT,
    MANTISSA_BITS,
    OCTAVES,
    SIGN_KEY,
    top_exponent,
)


def key_table(top: int, device: torch.device) -> torch.Tensor:
    """Maps each key (sign, exponent, kept mantissa) to a bin in [0, 2 * BINS_PER_SIGN).

    The bin index grows with the signed value (negative d first, the two bins next to zero in the
    middle), so a row of counts reads left to right like a histogram.
    """
    keys = torch.arange(KEY_MASK + 1, device=device)
    magnitude = keys & (SIGN_KEY - 1)
    low = (top - OCTAVES) << MANTISSA_BITS
    step = (magnitude - low).clamp(0, BINS_PER_SIGN - 1)  # 0 = next to zero
    negative = keys >= SIGN_KEY
    return torch.where(negative, BINS_PER_SIGN - 1 - step, BINS_PER_SIGN + step)


class HistogramAccumulator:
    """Running counts over blocks of centred float32 scores: by bit key [keys, neurons] from the
    eager pass, by window bin [bins, neurons] from the compiled one (``engine.scan.block_pass``)."""

    def __init__(self, n_neurons: int, bound: float, device: torch.device):
        self.top = top_exponent(bound)
        self.n_neurons = n_neurons
        self.device = device
        self._key_counts: torch.Tensor | None = None  # allocated by the first eager block
        self._one = torch.ones((1, 1), dtype=torch.int32, device=device)
        self.bin_counts: torch.Tensor | None = None  # the compiled pass's counts
        # The window's lowest key, as the compiled pass takes it (a tensor: no recompiling per layer).
        self.window_low = torch.tensor(
            (self.top - OCTAVES) << MANTISSA_BITS, dtype=torch.int32, device=device
        )

    def update(self, centred: torch.Tensor, keys: torch.Tensor) -> None:
        """Fold in a [tokens, neurons] float32 block; ``keys`` is an int64 scratch of its shape
        (scatter_add takes int64 indices: writing them there directly spares a copy per block)."""
        if self._key_counts is None:
            self._key_counts = torch.zeros(
                (KEY_MASK + 1, self.n_neurons), dtype=torch.int32, device=self.device
            )
        torch.bitwise_right_shift(centred.view(torch.int32), KEY_SHIFT, out=keys)
        keys.bitwise_and_(KEY_MASK)
        self._key_counts.scatter_add_(0, keys, self._one.expand(keys.shape))

    def bin_table(self) -> torch.Tensor:
        """The window-bin counts the compiled pass adds to in place."""
        if self.bin_counts is None:
            self.bin_counts = torch.zeros(
                (2 * BINS_PER_SIGN, self.n_neurons), dtype=torch.int32, device=self.device
            )
        return self.bin_counts

    def result(self) -> np.ndarray:
        """Counts per neuron and bin: [neurons, 2 * BINS_PER_SIGN] int32 (no count exceeds the
        vocabulary size)."""
        bins = torch.zeros((2 * BINS_PER_SIGN, self.n_neurons), dtype=torch.int32, device=self.device)
        if self._key_counts is not None:
            bins.index_add_(0, key_table(self.top, self.device), self._key_counts)
        if self.bin_counts is not None:
            bins += self.bin_counts
        return np.ascontiguousarray(bins.T.cpu().numpy())
