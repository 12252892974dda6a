"""Folding the final norm into W_U as TransformerLens folds it, for RMSNorm, Gemma's (1 + w)
RMSNorm and LayerNorm: our projection against TransformerLens's processed W_U
(``enable_compatibility_mode``: fold the norm, centre the writing weights and the unembedding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models import _byte_level_tokenizer, tiny_vocabulary
from reference import projected_unembed64

from engine.projection import ProjectedUnembed
from engine.settings import Projection
from engine.sources.bridge_source import BridgeSource


def _checkpoint(kind: str, folder):
    torch.manual_seed(3)
    if kind == "gemma":
        from transformers import GemmaConfig, GemmaForCausalLM

        model = GemmaForCausalLM(
            GemmaConfig(
                vocab_size=300,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=8,
                max_position_embeddings=64,
            )
        )
    elif kind == "gpt_neox":
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        model = GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=300,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=64,
            )
        )
    elif kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=300,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
            )
        )
    with torch.no_grad():  # random norms, so that folding (and its offset and centring) shows
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and ("norm" in name or "ln" in name):
                parameter.uniform_(-0.5, 0.5) if name.endswith("bias") else parameter.uniform_(0.5, 2.0)
    model.save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(300)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["llama", "gemma", "gpt2", "gpt_neox"])
def test_folded_unembedding_equals_transformer_lens_processed_weights(kind, tmp_path):
    source = BridgeSource(_checkpoint(kind, tmp_path / kind), "fp", kind)
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
