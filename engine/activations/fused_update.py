"""The activation state's per-batch pass in one sweep over the block, compiled with numba (CPU).

The eager update (``LayerActivationState.update``) makes a dozen passes over each [positions,
d_mlp] block: counts, histogram bins, the poles' and the cases' bar tests. Here one parallel loop
over column stripes does all of it and writes, per entry, a small code saying which lists it may
enter; the few flagged entries are then admitted by the same code as the eager path. Results are
identical to the eager update (tests compare the bytes); the eager path stays the reference and
the fallback (other devices, numba missing, ``NEURON_TUI_EAGER=1``).

Entry codes: bit 0 the positive pole, bit 1 the negative pole, bit 4 the entry's case (bits 2-3).
"""

from __future__ import annotations

import os

import numpy as np

from engine.scan.heap import push

try:  # numba is a dependency; a broken install falls back to the eager path
    import numba

    AVAILABLE = os.environ.get("NEURON_TUI_EAGER", "") != "1"
except ImportError:  # pragma: no cover
    numba = None  # type: ignore[assignment]
    AVAILABLE = False

POSITIVE, NEGATIVE, CASE = 1, 2, 16
_STRIPE = 64


def _sweep(
    acts, bits_of, rows, gate, up, gated, pos_bar, neg_bar, case_bar, key_shift, sign_key, low, per_sign,
    positive, negative, hist, cases, codes,
):  # fmt: skip
    n_rows = rows.shape[0]
    d_mlp = acts.shape[1]
    stripes = (d_mlp + _STRIPE - 1) // _STRIPE
    for stripe in numba.prange(stripes):
        first = stripe * _STRIPE
        last = min(first + _STRIPE, d_mlp)
        for p in range(n_rows):
            row = rows[p]
            for n in range(first, last):
                a = acts[row, n]
                key = bits_of[row, n] >> key_shift
                step = (key & (sign_key - 1)) - low
                step = 0 if step < 0 else (per_sign - 1 if step > per_sign - 1 else step)
                bin_ = per_sign - 1 - step if key < 0 else per_sign + step
                hist[bin_, n] += 1
                code = 0
                if a > 0:
                    positive[n] += 1
                    if a >= pos_bar[n]:
                        code |= POSITIVE
                elif a < 0:
                    negative[n] += 1
                    if -a >= neg_bar[n]:
                        code |= NEGATIVE
                if gated:
                    case = (0 if gate[row, n] > 0 else 2) + (0 if up[row, n] > 0 else 1)
                    cases[case, n] += 1
                    if abs(a) >= case_bar[case, n]:
                        code |= CASE | (case << 2)
                codes[p, n] = code


def _batch_bars(
    acts, rows, gate, up, gated, pole_keep, case_keep,
    pos_open, neg_open, case_open, pos_out, neg_out, case_out,
):  # fmt: skip
    """Per unit whose list is not yet full (``*_open``), the batch's keep-th largest score (-inf
    with fewer entries): what a top-k along the batch gives, without sorting it. Column stripes
    run in parallel and each reads its rows in order (the block is row-major)."""
    d_mlp = acts.shape[1]
    stripes = (d_mlp + _STRIPE - 1) // _STRIPE
    for stripe in numba.prange(stripes):
        first = stripe * _STRIPE
        last = min(first + _STRIPE, d_mlp)
        width = last - first
        pos_heap = np.empty((width, pole_keep), dtype=np.float32)
        neg_heap = np.empty((width, pole_keep), dtype=np.float32)
        case_heap = np.empty((width, 4, case_keep), dtype=np.float32)
        pos_size = np.zeros(width, dtype=np.int64)
        neg_size = np.zeros(width, dtype=np.int64)
        case_size = np.zeros((width, 4), dtype=np.int64)
        for p in range(rows.shape[0]):
            row = rows[p]
            for n in range(first, last):
                j = n - first
                a = acts[row, n]
                # The test before each call spares a call for the many entries that cannot enter.
                if pos_open[n] and (pos_size[j] < pole_keep or a > pos_heap[j, 0]):
                    pos_size[j] = push(pos_heap[j], None, pos_size[j], a, 0)
                if neg_open[n] and (neg_size[j] < pole_keep or -a > neg_heap[j, 0]):
                    neg_size[j] = push(neg_heap[j], None, neg_size[j], -a, 0)
                if gated:
                    case = (0 if gate[row, n] > 0 else 2) + (0 if up[row, n] > 0 else 1)
                    size = case_size[j, case]
                    if case_open[case, n] and (size < case_keep or abs(a) > case_heap[j, case, 0]):
                        case_size[j, case] = push(case_heap[j, case], None, size, abs(a), 0)
        for n in range(first, last):
            j = n - first
            if pos_open[n]:
                pos_out[n] = pos_heap[j, 0] if pos_size[j] == pole_keep else -np.inf
            if neg_open[n]:
                neg_out[n] = neg_heap[j, 0] if neg_size[j] == pole_keep else -np.inf
            if gated:
                for case in range(4):
                    if case_open[case, n]:
                        full = case_size[j, case] == case_keep
                        case_out[case, n] = case_heap[j, case, 0] if full else -np.inf


_compiled: dict = {}


def _kernel(function):
    """Compile on first use (cached on disk by numba)."""
    name = function.__name__
    if name not in _compiled:
        _compiled[name] = numba.njit(parallel=True, cache=True, nogil=True)(function)
    return _compiled[name]


def sweep(*arguments) -> None:
    """The per-batch sweep (see the module's docstring)."""
    _kernel(_sweep)(*arguments)


def batch_bars(*arguments) -> None:
    """Batch bars for units whose lists are not yet full (see ``_batch_bars``)."""
    _kernel(_batch_bars)(*arguments)
