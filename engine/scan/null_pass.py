"""The null baseline's numbers: seeded random unit directions projected exactly like neurons
(what the baseline means is said in engine.data.null)."""

from __future__ import annotations

import numpy as np

from engine.data.null import NULL_SAMPLES, NULL_SEED, NullBaseline

_TOKENS_PER_BATCH = 2048  # x 2,048 directions of float32: 16 MiB at a time


def compute_null(unembed, samples: int = NULL_SAMPLES, seed: int = NULL_SEED) -> NullBaseline:
    """Max |score| of ``samples`` seeded random unit directions against ``unembed``, with float32
    products whatever the scan's precision (a few thousand directions: cheap at any precision)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn((samples, unembed.d_model), generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    fast = directions.to(unembed.device, torch.float32).T.contiguous()
    maxima = torch.zeros(samples, device=unembed.device)
    for start in range(0, unembed.d_vocab, _TOKENS_PER_BATCH):
        scores = unembed.float32_columns(start, start + _TOKENS_PER_BATCH) @ fast
        torch.maximum(maxima, scores.abs_().amax(dim=0), out=maxima)
    return NullBaseline(values=np.sort(maxima.double().cpu().numpy()))
