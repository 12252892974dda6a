"""Float64 dot products of rows with a few chosen rows of a float32 table: the rescoring every
reported score and cosine comes from.

On a CPU a numba kernel dots each float64 row with its candidates' float32 table rows, widening
one element at a time (float32 products are exact in float64): no gathered [rows, candidates,
d_model] float64 copy, which cost more than the dots. Elsewhere (a GPU, numba missing) torch
gathers the rows and widens them.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.scan import fused_block

if fused_block.numba is not None:
    import numba


def _dots(rows, table, ids, out):
    """out[i, c] = sum_d rows[i, d] * table[ids[i, c], d], in float64."""
    n_rows, width = ids.shape
    d_model = rows.shape[1]
    for i in numba.prange(n_rows):
        row = rows[i]
        for c in range(width):
            other = table[ids[i, c]]
            total = 0.0
            for d in range(d_model):
                total += row[d] * np.float64(other[d])
            out[i, c] = total


_kernel = None


def row_dots(rows64: torch.Tensor, table32: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[n, c] float64: each of ``rows64`` [n, d] (float64) against ``table32[ids]`` ([V, d] float32,
    ``ids`` [n, c])."""
    global _kernel
    if rows64.device.type == "cpu" and fused_block.AVAILABLE:
        if _kernel is None:
            _kernel = numba.njit(parallel=True, cache=True, nogil=True)(_dots)
        out = np.empty(ids.shape, dtype=np.float64)
        _kernel(rows64.numpy(), table32.numpy(), ids.numpy(), out)
        return torch.from_numpy(out)
    return torch.einsum("nd,nkd->nk", rows64, table32[ids].double())


def candidate_scores(rows, unembed, ids: torch.Tensor, batch: slice) -> torch.Tensor:
    """Float64 scores [rows in ``batch``, candidates] of the neuron rows' tokens ``ids``."""
    if not unembed.transforms:
        return row_dots(rows.exact(batch), unembed.float32_columns(0, unembed.d_vocab), ids)
    return torch.einsum("cd,ckd->ck", rows.exact(batch), unembed.exact_columns(ids))
