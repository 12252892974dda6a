"""Hugging Face checkpoints loaded through TransformerLens 4's ``TransformerBridge``.

Weights are taken raw (no LayerNorm folding, no centring): the projection flags of a scan decide
what is folded, explicitly. Only safetensors weights are read and ``trust_remote_code`` stays off,
so loading a model never runs code shipped with it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from engine.data.model import ArrayRows, EmbeddingRows, FinalNorm, MlpInputs, ModelInfo
from engine.data.tokens import Vocabulary, stored_token_to_bytes
from engine.errors import UserError, first_line
from engine.sources.base import DenseOnly, check_orientation


def _quiet_transformers() -> None:
    """Keep library progress bars and advice off the user's terminal (and out of the TUI)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)


def _tokenizer_style(stored_tokens: list[str]) -> str:
    joined = "".join(stored_tokens[:5000])
    if "Ġ" in joined:
        return "byte_level"
    if "▁" in joined:
        return "sentencepiece"
    return "literal"


def load_bridge(model_dir: Path, gguf_file: str | None = None):
    """Build a TransformerBridge over a local checkpoint; returns (bridge, tokenizer)."""
    _quiet_transformers()
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": gguf_file} if gguf_file else {"use_safetensors": True}
    if gguf_file:
        # transformers' GGUF conversion draws a tqdm bar of its own that no setting turns off once
        # tqdm is imported; it would land in a script's stderr or across the explorer's screen.
        from transformers import modeling_gguf_pytorch_utils

        modeling_gguf_pytorch_utils.tqdm = lambda iterable, **_: iterable
    try:
        # The tokenizer first: a GGUF file's metadata, read whole to build it, is gone before the
        # model's weights arrive.
        tokenizer = AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=False, **({"gguf_file": gguf_file} if gguf_file else {})
        )
        hf_model = _gguf_model(model_dir / gguf_file) if gguf_file else None
        if hf_model is None:
            hf_model = AutoModelForCausalLM.from_pretrained(
                model_dir, trust_remote_code=False, dtype=torch.float32, **extra
            )
    except OSError as error:
        first = first_line(error)
        raise UserError(
            f"cannot load the model in {model_dir}: {first}; "
            "neuron-tui reads safetensors or GGUF weights only"
        ) from error
    except ValueError as error:
        raise UserError(f"cannot load the model in {model_dir}: {first_line(error)}") from error
    try:
        bridge = TransformerBridge.boot_transformers(
            str(model_dir), hf_model=hf_model, tokenizer=tokenizer, trust_remote_code=False
        )
    except (ValueError, NotImplementedError, KeyError) as error:
        first = first_line(error)
        raise UserError(f"TransformerLens cannot wrap the model in {model_dir}: {first}") from error
    return bridge, tokenizer


def _gguf_model(path: Path):
    """The GGUF file's model read a tensor at a time (engine.sources.gguf_model); None where that
    path cannot place the file's tensors and transformers' loader is needed."""
    from engine.sources.gguf_model import UnplacedTensors, load_gguf_model

    try:
        return load_gguf_model(path)
    except UnplacedTensors:
        return None


def bridge_final_norm(bridge) -> FinalNorm | None:
    """The bridge's final norm as folding needs it (see engine.sources.base.FinalNorm)."""
    return bridge_norm(bridge, getattr(bridge, "ln_final", None))


def bridge_norm(bridge, norm) -> FinalNorm | None:
    """One of the bridge's norms, described as engine.sources.base.FinalNorm describes one."""
    if norm is None or getattr(norm, "w", None) is None:
        return None
    weight = np.ascontiguousarray(norm.w.detach().to("cpu").float().numpy()).reshape(-1)
    original = getattr(norm, "original_component", None) or getattr(norm, "_original_component", None)
    if type(original).__name__.startswith("Gemma"):  # Gemma's RMSNorm multiplies by (1 + weight)
        weight = weight + np.float32(1.0)
    centres = str(getattr(bridge.cfg, "normalization_type", "")).startswith("LN")
    return FinalNorm(weight, centres=centres)


class BridgeSource(DenseOnly):
    """A checkpoint directory (or a GGUF file through transformers) wrapped by TransformerBridge."""

    def __init__(self, model_dir: Path, fingerprint: str, display_name: str, gguf_file: str | None = None):
        self._bridge, self._tokenizer = load_bridge(model_dir, gguf_file)
        cfg = self._bridge.cfg
        if not getattr(cfg, "d_mlp", None):
            raise UserError(
                f"model {display_name} has no dense MLP (d_mlp is unset); neuron-tui reads dense MLP models"
            )
        has_norm = getattr(self._bridge, "ln_final", None) is not None
        self.info = ModelInfo(
            name=display_name,
            fingerprint=fingerprint,
            architecture=str(
                getattr(cfg, "architecture", None) or type(self._bridge.original_model).__name__
            ),
            n_layers=int(cfg.n_layers),
            d_model=int(cfg.d_model),
            d_mlp=int(cfg.d_mlp),
            d_vocab=int(cfg.d_vocab),
            has_final_norm=has_norm,
        )

    @property
    def bridge(self):
        return self._bridge

    @property
    def tokenizer(self):
        return self._tokenizer

    @staticmethod
    def _numpy(tensor) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().to("cpu").float().numpy())

    def unembed(self) -> np.ndarray:
        return check_orientation("W_U", self._numpy(self._bridge.W_U), self.info.d_model, self.info.d_vocab)

    def final_norm(self) -> FinalNorm | None:
        if not self.info.has_final_norm:
            return None
        return bridge_final_norm(self._bridge)

    def final_norm_weight(self) -> np.ndarray | None:
        if not self.info.has_final_norm:
            return None
        return self._numpy(self._bridge.ln_final.w).reshape(-1)

    def mlp_out(self, layer: int) -> np.ndarray:
        w_out = self._numpy(self._bridge.blocks[layer].mlp.W_out)
        return np.ascontiguousarray(check_orientation("W_out", w_out, self.info.d_mlp, self.info.d_model))

    def mlp_in(self, layer: int) -> MlpInputs:
        mlp = self._bridge.blocks[layer].mlp
        d_mlp, d_model = self.info.d_mlp, self.info.d_model

        def rows(name: str, tensor) -> np.ndarray:  # TransformerLens stores W_in as [d_model, d_mlp]
            return np.ascontiguousarray(check_orientation(name, self._numpy(tensor).T, d_mlp, d_model))

        gate = getattr(mlp, "W_gate", None)
        return MlpInputs(up=rows("W_in", mlp.W_in), gate=None if gate is None else rows("W_gate", gate))

    def mlp_norm(self, layer: int) -> FinalNorm | None:
        return bridge_norm(self._bridge, getattr(self._bridge.blocks[layer], "ln2", None))

    def embedding(self) -> np.ndarray:
        return self._numpy(self._bridge.W_E)

    def embedding_rows(self) -> EmbeddingRows:
        return ArrayRows(self._bridge.W_E.detach().to("cpu").float().numpy())  # the model's own, a view

    def vocabulary(self) -> Vocabulary:
        return tokenizer_vocabulary(self._tokenizer, self.info.d_vocab)


def tokenizer_vocabulary(tokenizer, d_vocab: int) -> Vocabulary:
    """Every token's bytes, from a Hugging Face tokenizer, padded to the unembedding's width."""
    size = len(tokenizer)
    stored = tokenizer.convert_ids_to_tokens(list(range(size)))
    stored = [token if isinstance(token, str) else "" for token in stored]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    style = _tokenizer_style(stored)
    tokens = [
        stored_token_to_bytes(text, style, special=index in special) for index, text in enumerate(stored)
    ]
    return Vocabulary.from_bytes(tokens[:d_vocab]).padded_to(d_vocab)
