"""The compiled sweep of the activation state (engine.activations.fused_update) against the eager
update it replaces on the CPU: the same state, byte for byte, batch after batch, with ties,
zeros, rows left out, and lists that fill at different times."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.activations import fused_update
from engine.activations.state import LayerActivationState

pytestmark = pytest.mark.skipif(not fused_update.AVAILABLE, reason="numba is not installed")


def _batches(seed: int, d_mlp: int, sizes: list[int]):
    rng = np.random.default_rng(seed)
    start = 0
    for size in sizes:
        flat_rows = size + 3  # three padding rows, left out by ``rows``
        acts = np.round(rng.standard_normal((flat_rows, d_mlp)), 1).astype(np.float32)  # many ties
        acts[rng.random(acts.shape) < 0.05] = 0.0
        acts[rng.random(acts.shape) < 0.01] = -0.0
        gate = np.round(rng.standard_normal((flat_rows, d_mlp)), 1).astype(np.float32)
        up = np.round(rng.standard_normal((flat_rows, d_mlp)), 1).astype(np.float32)
        rows = np.sort(rng.choice(flat_rows, size=size, replace=False))
        index = np.arange(start, start + size)
        start += size
        yield (torch.from_numpy(a) for a in (acts, np.asarray(index, dtype=np.int64), gate, up, rows))


@pytest.mark.parametrize("gated", [True, False])
def test_the_compiled_sweep_equals_the_eager_update(gated, monkeypatch):
    d_mlp, keep, case_keep = 70, 12, 5
    fused = LayerActivationState(d_mlp, keep, case_keep, gated, torch.device("cpu"))
    eager = LayerActivationState(d_mlp, keep, case_keep, gated, torch.device("cpu"))
    for acts, index, gate, up, rows in _batches(4, d_mlp, [5, 40, 1, 64, 33, 80]):
        fused.update(acts, index, gate if gated else None, up if gated else None, rows=rows)
        monkeypatch.setattr(fused_update, "AVAILABLE", False)
        eager.update(acts, index, gate if gated else None, up if gated else None, rows=rows)
        monkeypatch.setattr(fused_update, "AVAILABLE", True)
        ours, theirs = fused.arrays(), eager.arrays()
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert (fused.lists["negative"].index >= 0).all()  # the lists filled: the bars were exercised
