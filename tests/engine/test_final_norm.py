"""Folding the final norm into W_U as TransformerLens folds it, for RMSNorm, Gemma's (1 + w)
RMSNorm and LayerNorm: our projection against TransformerLens's processed W_U
(``enable_compatibility_mode``: fold the norm, centre the writing weights and the unembedding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.scan.projection import ProjectedUnembed
from engine.settings import Projection
from engine.sources.bridge_source import BridgeSource
from tests.helpers.models import write_hf_checkpoint
from tests.helpers.reference import projected_unembed64


@pytest.mark.parametrize("kind", ["llama", "gemma", "gpt2", "gpt_neox"])
def test_folded_unembedding_equals_transformer_lens_processed_weights(kind, tmp_path):
    source = BridgeSource(write_hf_checkpoint(tmp_path / kind, kind, seed=3), "fp", kind)
    unembed, final_norm = source.unembed(), source.final_norm()
    projection = Projection(fold_final_norm=True, center_unembed=True)
    ours = ProjectedUnembed(unembed, final_norm, projection, torch.device("cpu"), torch.float32)
    columns = ours.exact_columns(torch.arange(ours.d_vocab)).numpy().T  # [d_model, d_vocab]
    np.testing.assert_allclose(
        columns, projected_unembed64(unembed, final_norm, projection), rtol=1e-12, atol=1e-12
    )
    bridge = source.bridge
    bridge.enable_compatibility_mode(disable_warnings=True)
    processed = bridge.W_U.detach().double().numpy()
    scale = np.abs(processed).max()
    np.testing.assert_allclose(columns, processed, rtol=0, atol=1e-6 * scale)
    assert final_norm.centres == (kind in ("gpt2", "gpt_neox"))
