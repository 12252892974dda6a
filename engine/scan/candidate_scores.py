"""Float64 scores of each neuron's candidate tokens: the rescoring every reported score comes from.

For the raw projection on a CPU a numba kernel dots each float64 neuron row with its candidates'
float32 columns widened one at a time (products of float32 numbers are exact in float64): no
gathered [neurons, candidates, d_model] float64 copy, which cost more than the dots. Elsewhere
(a transformed unembedding, a GPU) the columns are gathered and transformed in float64 by torch.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.scan import fused_block

if fused_block.numba is not None:
    import numba


def _dots(rows, scale, columns, ids, out):
    """out[i, c] = sum_d rows[i, d] * scale[i] * columns[ids[i, c], d], in float64."""
    n_rows, width = ids.shape
    d_model = rows.shape[1]
    for i in numba.prange(n_rows):
        wide = np.empty(d_model, dtype=np.float64)
        for d in range(d_model):
            wide[d] = np.float64(rows[i, d]) * scale[i]
        for c in range(width):
            column = columns[ids[i, c]]
            total = 0.0
            for d in range(d_model):
                total += wide[d] * np.float64(column[d])
            out[i, c] = total


_kernel = None


def candidate_scores(rows, unembed, ids: torch.Tensor, batch: slice) -> torch.Tensor:
    """Float64 scores [rows in ``batch``, candidates] of the rows' tokens ``ids``."""
    global _kernel
    if unembed.device.type == "cpu" and not unembed.transforms and fused_block.AVAILABLE:
        if _kernel is None:
            _kernel = numba.njit(parallel=True, cache=True, nogil=True)(_dots)
        w = rows.w[batch].numpy()
        scale = rows.scale(batch).numpy()
        out = np.empty(ids.shape, dtype=np.float64)
        _kernel(w, scale, unembed.float32_columns(0, unembed.d_vocab).numpy(), ids.numpy(), out)
        return torch.from_numpy(out)
    return torch.einsum("cd,ckd->ck", rows.exact(batch), unembed.exact_columns(ids))
