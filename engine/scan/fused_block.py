"""Everything read off a CPU score block in two sweeps, compiled with numba.

The eager block pass (``engine.scan.layer_scan``) reads and writes each [tokens, neurons] block a
dozen times: |score|, a top-k per token, the unit-norm maximum, the centring, the histogram keys, three
power sums and two candidate tests, each a pass over memory; on a 2-core CPU together they cost more
than the block's product. Here:

- a sweep over column stripes (in parallel; each stripe owns its neurons) centres each score, counts
  it into the neuron's histogram bin, adds its float64 centred powers and offers it to the neuron's
  running candidates (min-heaps of the k + margin largest and most negative scores);
- a sweep over token rows (in parallel) keeps each token's best neurons by |score| and the neuron
  meeting it hardest per unit norm.

Both read the block while it is still in cache, and neither allocates. The arithmetic is the eager
pass's (float32 centring, the same histogram keys, float64 powers), so counts and candidates are
the same; the power sums differ from the eager pass's only in summation order. The eager path stays
the reference and the fallback (other devices, numba missing, ``NEURON_TUI_EAGER=1``).
"""

from __future__ import annotations

import os

import numpy as np

from engine.data.score_histogram import BINS_PER_SIGN, KEY_SHIFT, SIGN_KEY
from engine.scan.heap import push

try:  # numba is a dependency; a broken install falls back to the eager path
    import numba
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    AVAILABLE = os.environ.get("NEURON_TUI_EAGER", "") != "1"
except ImportError:  # pragma: no cover
    numba = None  # type: ignore[assignment]
    AVAILABLE = False

_STRIPE = 64  # neurons per parallel stripe of the neuron sweep
_ROW_GROUP = 16  # tokens per parallel group of the token sweep
_MAX_SWEEP_ROWS = 65535  # rows per neuron sweep: its per-block counts are 16-bit


def _offer(values, ids, sizes, bars, row, value, identity):
    """Offer ``value`` to row ``row``'s heap if it beats the row's bar; once the heap is full its
    bar is its smallest value."""
    if value > bars[row]:  # rare once the heaps are full
        sizes[row] = push(values[row], ids[row], sizes[row], value, identity)
        if sizes[row] == values.shape[1]:
            bars[row] = values[row, 0]


if numba is not None:  # called from the compiled kernels: they must be compiled themselves (lazily)
    _offer = numba.njit(cache=True, nogil=True, inline="always")(_offer)

    @intrinsic
    def _float_bits(typingctx, value):
        """A float32's bit pattern as an int32 (a register move: the loop around it vectorises)."""
        del typingctx

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return types.int32(types.float32), codegen


def _neuron_sweep(
    block, first_token, mean, window_low, hist, sums,
    pos_values, pos_ids, pos_size, pos_bar, neg_values, neg_ids, neg_size, neg_bar,
):  # fmt: skip
    """Per neuron: histogram counts, centred power sums and candidates, over column stripes.
    ``*_bar``: what a score must beat to enter (-inf until the heap is full, then its smallest)."""
    n_rows, d_mlp = block.shape
    stripes = (d_mlp + _STRIPE - 1) // _STRIPE
    for stripe in numba.prange(stripes):
        first = stripe * _STRIPE
        last = min(first + _STRIPE, d_mlp)
        width = last - first
        centre = mean[first:last]
        bins = np.empty(width, dtype=np.int32)
        # The stripe's counts for this block in 16 bits: 40 KiB for 64 neurons, inside L1 (blocks
        # have fewer than 65,536 rows; the caller splits taller ones), added to ``hist`` at the end.
        counts = np.zeros((2 * BINS_PER_SIGN, width), dtype=np.uint16)
        square = np.zeros(width, dtype=np.float64)
        cube = np.zeros(width, dtype=np.float64)
        fourth = np.zeros(width, dtype=np.float64)
        for t in range(n_rows):
            row = block[t, first:last]  # a fixed-width slice: the loops below vectorise
            for j in range(width):
                wide = np.float64(row[j] - centre[j])
                power = wide * wide
                square[j] += power
                cube[j] += power * wide
                fourth[j] += power * power
            for j in range(width):
                # numba's stub types an intrinsic's call with its typing context and as never
                # returning; compiled code calls it with the value alone and gets an int32.
                key = _float_bits(row[j] - centre[j])  # type: ignore[call-arg, var-annotated]
                step = ((key >> KEY_SHIFT) & (SIGN_KEY - 1)) - window_low
                step = min(max(step, 0), BINS_PER_SIGN - 1)
                bins[j] = BINS_PER_SIGN - 1 - step if key < 0 else BINS_PER_SIGN + step
            for j in range(width):
                counts[bins[j], j] += 1
            for j in range(width):
                _offer(pos_values, pos_ids, pos_size, pos_bar, first + j, row[j], first_token + t)
                _offer(neg_values, neg_ids, neg_size, neg_bar, first + j, -row[j], first_token + t)
        for b in range(2 * BINS_PER_SIGN):
            for j in range(width):
                hist[b, first + j] += counts[b, j]
        for j in range(width):
            sums[0, first + j] += square[j]
            sums[1, first + j] += cube[j]
            sums[2, first + j] += fourth[j]


def _span_max(values, start, stop):
    """max(values[start:stop]) with eight running maxima (independent chains: the compare-and-select
    latency no longer bounds the loop). -inf for an empty span."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = np.float32(-np.inf)
    n = start
    while n + 8 <= stop:
        m0 = max(m0, values[n])
        m1 = max(m1, values[n + 1])
        m2 = max(m2, values[n + 2])
        m3 = max(m3, values[n + 3])
        m4 = max(m4, values[n + 4])
        m5 = max(m5, values[n + 5])
        m6 = max(m6, values[n + 6])
        m7 = max(m7, values[n + 7])
        n += 8
    while n < stop:
        m0 = max(m0, values[n])
        n += 1
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


if numba is not None:
    _span_max = numba.njit(cache=True, nogil=True, inline="always")(_span_max)


def _token_sweep(block, inverse_norm, token_ids, token_dots, unit_best, unit_neuron):
    """Per token: its best neurons by |score| (sorted, larger first, ties by neuron), and the
    neuron with the largest |score| per unit norm (the first of equals). Rows run in parallel in
    groups, each with its own scratch.

    A row's ``keep`` best lie among its entries at or above the smallest of the maxima of ``keep``
    spans of the row (those maxima are ``keep`` entries at or above it), so only those few entries
    are offered to the heap, in order: the same selection, ties included, as offering every entry.
    """
    n_rows, d_mlp = block.shape
    keep = token_ids.shape[1]
    span = (d_mlp + keep - 1) // keep
    groups = (n_rows + _ROW_GROUP - 1) // _ROW_GROUP
    for group in numba.prange(groups):
        magnitude = np.empty(d_mlp, dtype=np.float32)
        unit = np.empty(d_mlp, dtype=np.float32)
        magnitudes = np.empty(keep, dtype=np.float32)
        neurons = np.empty(keep, dtype=np.int64)
        for t in range(group * _ROW_GROUP, min((group + 1) * _ROW_GROUP, n_rows)):
            row = block[t]
            for n in range(d_mlp):  # vectorised
                magnitude[n] = abs(row[n])
                unit[n] = magnitude[n] * inverse_norm[n]
            best = _span_max(unit, 0, d_mlp)
            best_neuron = 0
            while best_neuron < d_mlp - 1 and not unit[best_neuron] >= best:
                best_neuron += 1
            bar = np.float32(np.inf)
            for start in range(0, d_mlp, span):
                bar = min(bar, _span_max(magnitude, start, min(start + span, d_mlp)))
            size = 0
            for n in range(d_mlp):
                if magnitude[n] >= bar:
                    size = push(magnitudes, neurons, size, magnitude[n], n)
            for i in range(1, size):  # heap -> descending by magnitude, ties by neuron id
                m, neuron = magnitudes[i], neurons[i]
                at = i
                while at > 0 and (
                    magnitudes[at - 1] < m or (magnitudes[at - 1] == m and neurons[at - 1] > neuron)
                ):
                    magnitudes[at] = magnitudes[at - 1]
                    neurons[at] = neurons[at - 1]
                    at -= 1
                magnitudes[at] = m
                neurons[at] = neuron
            for i in range(size):
                token_ids[t, i] = neurons[i]
                token_dots[t, i] = row[neurons[i]]
            unit_best[t] = best
            unit_neuron[t] = best_neuron


def _row_candidates(
    block, first_token, inverse,
    pos_values, pos_ids, pos_size, pos_bar, neg_values, neg_ids, neg_size, neg_bar,
):  # fmt: skip
    """Per row of ``block`` [rows, tokens] (token t of the row is ``first_token + t``), the running
    largest and most negative of ``block[r, t] * inverse[t]`` (float32, as torch multiplies them):
    the candidates of the input side, whose rows are neurons."""
    n_rows, width = block.shape
    for r in numba.prange(n_rows):
        row = block[r]
        for t in range(width):
            score = row[t] * inverse[first_token + t]
            _offer(pos_values, pos_ids, pos_size, pos_bar, r, score, first_token + t)
            _offer(neg_values, neg_ids, neg_size, neg_bar, r, -score, first_token + t)


_compiled: dict = {}


def _kernel(function):
    """Compile on first use (cached on disk by numba: seconds the first time on a machine)."""
    name = function.__name__
    if name not in _compiled:
        # Contracting multiply-adds (FMA) speeds the float64 power sums and only makes them more
        # exact; no other fast-math liberty is taken (the centring and keys stay IEEE float32).
        _compiled[name] = numba.njit(parallel=True, cache=True, nogil=True, fastmath={"contract"})(function)
    return _compiled[name]


class FusedBlockPass:
    """One layer's per-block state for the numba sweeps: running candidates as heaps, the power
    sums and the histogram counts (numpy views of the scan's own tensors where given)."""

    def __init__(self, d_mlp: int, keep: int, sums: np.ndarray, hist: np.ndarray):
        self.keep = keep
        self.pos_values = np.full((d_mlp, keep), -np.inf, dtype=np.float32)
        self.pos_ids = np.full((d_mlp, keep), -1, dtype=np.int64)
        self.pos_size = np.zeros(d_mlp, dtype=np.int64)
        self.neg_values = np.full((d_mlp, keep), -np.inf, dtype=np.float32)
        self.neg_ids = np.full((d_mlp, keep), -1, dtype=np.int64)
        self.neg_size = np.zeros(d_mlp, dtype=np.int64)
        self.pos_bar = np.full(d_mlp, -np.inf, dtype=np.float32)
        self.neg_bar = np.full(d_mlp, -np.inf, dtype=np.float32)
        self.sums = sums
        self.hist = hist

    def update(
        self,
        block: np.ndarray,
        first_token: int,
        mean: np.ndarray,
        inverse_norm: np.ndarray,
        window_low: int,
        tokens: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Fold in ``block`` [rows, d_mlp] float32 (row r is token ``first_token + r``); ``tokens``:
        the rows' slices of the per-token outputs (best neurons, their scores, unit best, its
        neuron), written in place."""
        for offset in range(0, block.shape[0], _MAX_SWEEP_ROWS):  # the 16-bit counts' limit
            self._neuron_rows(
                block[offset : offset + _MAX_SWEEP_ROWS], first_token + offset, mean, window_low
            )
        _kernel(_token_sweep)(block, inverse_norm, *tokens)

    def _neuron_rows(self, block: np.ndarray, first_token: int, mean: np.ndarray, window_low: int) -> None:
        _kernel(_neuron_sweep)(
            block, first_token, mean, window_low, self.hist, self.sums,
            self.pos_values, self.pos_ids, self.pos_size, self.pos_bar,
            self.neg_values, self.neg_ids, self.neg_size, self.neg_bar,
        )  # fmt: skip

    def extremes(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """(values, ids) of the largest and of the negated smallest scores, each row sorted larger
        first (ties by token id), as ``_RunningExtremes`` keeps them."""
        return _sorted(self.pos_values, self.pos_ids), _sorted(self.neg_values, self.neg_ids)


class RowCandidates:
    """Running candidates of each row of [rows, tokens] blocks: the ``keep`` largest and the
    ``keep`` most negative scaled scores, with their token ids."""

    def __init__(self, n_rows: int, keep: int):
        self.keep = keep
        shape = (n_rows, keep)
        self.pos_values = np.full(shape, -np.inf, dtype=np.float32)
        self.pos_ids = np.full(shape, -1, dtype=np.int64)
        self.neg_values = np.full(shape, -np.inf, dtype=np.float32)
        self.neg_ids = np.full(shape, -1, dtype=np.int64)
        self.pos_size = np.zeros(n_rows, dtype=np.int64)
        self.neg_size = np.zeros(n_rows, dtype=np.int64)
        self.pos_bar = np.full(n_rows, -np.inf, dtype=np.float32)
        self.neg_bar = np.full(n_rows, -np.inf, dtype=np.float32)

    def update(self, block: np.ndarray, first_token: int, inverse: np.ndarray) -> None:
        _kernel(_row_candidates)(
            block, first_token, inverse,
            self.pos_values, self.pos_ids, self.pos_size, self.pos_bar,
            self.neg_values, self.neg_ids, self.neg_size, self.neg_bar,
        )  # fmt: skip

    def extremes(self):
        """(largest values, ids) descending and (negated smallest values, ids) descending."""
        return _sorted(self.pos_values, self.pos_ids), _sorted(self.neg_values, self.neg_ids)


def _sorted(values: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    by_id = np.argsort(ids, axis=1, kind="stable")
    by_value = np.argsort(-np.take_along_axis(values, by_id, 1), axis=1, kind="stable")
    order = np.take_along_axis(by_id, by_value, 1)
    return np.take_along_axis(values, order, 1), np.take_along_axis(ids, order, 1)
