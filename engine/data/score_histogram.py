"""Every neuron's histogram of scores over the whole vocabulary, built during the scan.

The scan already holds each block of centred scores ``d = score - mean`` in float32. Their bit
patterns give log-spaced bins for almost nothing: sign, exponent and the top ``MANTISSA_BITS`` of
the mantissa, read with one shift, name a bin whose width is 1/8 of an octave (9% of its value).
A lookup table maps those keys to ``2 * BINS_PER_SIGN`` bins per neuron over a window of
``OCTAVES`` octaves below a bound on the layer's largest |d|: smaller magnitudes fall in the bin
next to zero, so the counts are exact at that resolution and always sum to the vocabulary size.

The detail view redraws a neuron's histogram from these counts on linear bins (``linear_counts``)
without the model. This module needs only numpy (the explorer's warm start never imports torch);
the scan's side is ``engine.scan.histogram_pass``.
"""

from __future__ import annotations

import math

import numpy as np

MANTISSA_BITS = 3
OCTAVES = 20
BINS_PER_SIGN = OCTAVES << MANTISSA_BITS
KEY_SHIFT = 23 - MANTISSA_BITS  # float32: 23 mantissa bits
KEY_MASK = (1 << (9 + MANTISSA_BITS)) - 1  # sign, 8 exponent bits, the kept mantissa bits
SIGN_KEY = 1 << (8 + MANTISSA_BITS)


def top_exponent(bound: float) -> int:
    """The biased float32 exponent just above ``bound`` (> 0): the window's upper end."""
    return min(254, max(OCTAVES + 1, math.frexp(max(bound, 1e-30))[1] + 127))


def bin_edges(top: int, octaves: int = OCTAVES) -> np.ndarray:
    """The 2 * (octaves << MANTISSA_BITS) + 1 edges in float64, ascending; the outermost are the
    window's ends (a count there may lie beyond: the caller clips to the known extremes)."""
    per_sign = octaves << MANTISSA_BITS
    low = (top - octaves) << MANTISSA_BITS
    steps = np.arange(per_sign + 1) + low
    magnitudes = np.ldexp(
        1.0 + (steps & ((1 << MANTISSA_BITS) - 1)) / (1 << MANTISSA_BITS), (steps >> MANTISSA_BITS) - 127
    )
    magnitudes[0] = 0.0  # the bin next to zero also holds everything smaller
    return np.concatenate([-magnitudes[::-1], magnitudes[1:]])


def linear_counts(
    counts: np.ndarray, top: int, mean: float, lowest: float, highest: float, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """One neuron's counts redrawn on ``n_bins`` equal bins over its scores [lowest, highest].

    Counts within a log bin are spread evenly over it (the cumulative count is interpolated
    linearly between log-bin edges), so totals are kept and the shape is exact to a log bin.
    Returns (bin centres in score units, counts as floats). The window's width in octaves follows
    from the number of bins.
    """
    octaves = counts.shape[-1] // (2 << MANTISSA_BITS)
    if highest <= lowest:
        highest = lowest + max(abs(lowest), 1.0) * 1e-12
    # Clipping keeps the edges ascending; the outermost filled bins then end at the exact extremes.
    edges = np.clip(bin_edges(top, octaves) + mean, lowest, highest)
    cumulative = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    display = np.linspace(lowest, highest, n_bins + 1)
    at_display = np.interp(display, edges, cumulative)
    # Float32 rounding can put a count a hair outside the float64 extremes: keep every count.
    at_display[0], at_display[-1] = 0.0, cumulative[-1]
    return (display[:-1] + display[1:]) / 2, np.diff(at_display)
