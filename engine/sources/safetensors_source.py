"""Hugging Face checkpoints read tensor by tensor, without building the model.

A scan needs W_U, the final norm and one layer's W_out at a time (the input side: W_E, and one
layer's input rows and the norm before its MLP). This source opens the
safetensors files memory-mapped (shard by shard through ``model.safetensors.index.json``), reads
only those tensors, in their stored dtype (bf16, fp16, fp32; converted to float32 one tensor at a
time), and names them from TransformerLens 4's architecture adapters: the adapter's component
mapping gives the Hugging Face module of the blocks, the MLP's output projection, the final norm,
the unembedding and the embedding, from ``config.json`` alone.

What the files hold differs from the module names in a few known ways, handled here: tied
embeddings (no unembedding tensor: the embedding is used), GPT-NeoX's unembedding stored as
``embed_out``, checkpoints saved without the base model's prefix (GPT-2's ``h.0...``), and GPT-2's
Conv1D output projection stored [d_mlp, d_model] where Linear layers store [d_model, d_mlp].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.data.experts import ExpertLabel
from engine.data.model import ArrayRows, EmbeddingRows, FinalNorm, MlpInputs, ModelInfo
from engine.data.tokens import Vocabulary
from engine.errors import UserError
from engine.sources.expert_tensors import ExpertTensors, RouterWeights, routed_expert_count
from engine.sources.fp8_blocks import FP8_DTYPES, block_size, dequantise, scale_name
from engine.sources.mxfp4_blocks import dequantise_expert, dequantised_shape
from engine.sources.mxfp4_blocks import scales_name as mxfp4_scales_name
from engine.sources.tensor_names import NamesStore, tensor_names

_UNEMBED_ALIASES = ("embed_out",)  # GPT-NeoX stores its lm_head under this name
_SLAB_ELEMENTS = 1 << 24  # 64 MiB of float32 per slab


def checkpoint_architecture(model_dir: Path, config: dict) -> str:
    """The model class that config.json names, or, as transformers does when it names none, the
    causal language model registered for its ``model_type``."""
    architectures = config.get("architectures") or []
    if architectures and isinstance(architectures[0], str):
        return architectures[0]
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        found = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
        if isinstance(found, str):
            return found
        raise UserError(
            f"{model_dir}/config.json names no architecture and transformers knows no causal language "
            f"model of type {model_type!r}: add an 'architectures' list"
        )
    raise UserError(
        f"{model_dir}/config.json names neither an architecture nor a model_type: add an 'architectures' list"
    )


_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def _check_float(stored: str, dtype: str) -> None:
    """Refuse, in one line naming the tensor, a stored type that is not a plain float."""
    if dtype not in _FLOAT_DTYPES:
        raise UserError(
            f"{stored} is stored as {dtype}, a quantisation neuron-tui cannot read: use a checkpoint "
            "saved in bf16, fp16 or fp32"
        )


class SafetensorsSource:
    def __init__(
        self, model_dir: Path, fingerprint: str, display_name: str, names_store: NamesStore | None = None
    ):
        """``names_store``: where earlier runs kept the tensor names (None: ask TransformerLens)."""
        self.model_dir = model_dir
        config = json.loads((model_dir / "config.json").read_text())
        self.architecture = checkpoint_architecture(model_dir, config)
        names = tensor_names(model_dir, self.architecture, names_store)
        self._top, self._mlp, self._block = names.top, names.mlp, names.block
        self._centres = names.normalization.startswith("LN")
        self._offset = self.architecture.startswith("Gemma")  # Gemma's RMSNorm scales by 1 + weight
        self._files = self._tensor_files()
        self._shapes: dict[str, tuple[int, ...]] | None = None  # from the headers, when first asked
        self._dtypes: dict[str, str] = {}
        self._fp8_block = block_size(config)  # FP8 weights' scale blocks (engine.sources.fp8_blocks)
        self.experts = self._experts(config, names)
        # Tied embeddings show in the files: no unembedding tensor, so the embedding is read.
        unembed_shape = self._shape(self._unembed_name())
        self.info = ModelInfo(
            name=display_name,
            fingerprint=fingerprint,
            architecture=self.architecture,
            n_layers=names.n_layers,
            d_model=names.d_model,
            d_mlp=names.d_mlp,  # a dense layer's (ModelInfo.width gives each layer's)
            d_vocab=int(max(unembed_shape)),
            has_final_norm=self._find(f"{self._top.get('ln_final', '')}.weight") is not None,
            layer_experts=None if self.experts is None else self.experts.layer_experts,
            experts_per_token=0 if self.experts is None else self.experts.per_token,
        )

    def _experts(self, config: dict, names) -> ExpertTensors | None:
        """The checkpoint's experts when config.json names routed experts (None for a dense model)."""
        if not routed_expert_count(config):
            return None
        experts = ExpertTensors(
            list(self._files),
            self._top["blocks"],
            names.n_layers,
            names.d_model,
            self.architecture,
            config,
            self._shape,
            self._read_part,
        )
        for stored in experts.stored_names():  # a quantised expert is refused now, not mid-scan
            if not (self._fp8_scales(stored) or self._mxfp4_scales(stored)):
                _check_float(stored, self._dtypes[stored])
        return experts

    def _mxfp4_scales(self, stored: str) -> str | None:
        """The scales of gpt-oss's MXFP4 blocks (engine.sources.mxfp4_blocks), None otherwise."""
        scales = mxfp4_scales_name(stored)
        return scales if scales is not None and scales in self._files else None

    def _fp8_scales(self, stored: str) -> str | None:
        """The block scales of an FP8 weight (engine.sources.fp8_blocks), None for any other."""
        self._shape(stored)  # the headers, with every tensor's stored type
        scales = scale_name(stored)
        return scales if self._dtypes.get(stored) in FP8_DTYPES and scales in self._files else None

    # --- which file holds which tensor ------------------------------------------------------
    def _tensor_files(self) -> dict[str, Path]:
        index = self.model_dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            return {name: self.model_dir / file for name, file in weight_map.items()}
        from safetensors import safe_open

        files: dict[str, Path] = {}
        for path in sorted(self.model_dir.glob("*.safetensors")):
            with safe_open(path, framework="pt") as handle:
                files.update({name: path for name in handle.keys()})
        return files

    def _find(self, name: str) -> str | None:
        """The stored name of module tensor ``name``: as is, or without the base model's prefix."""
        if name in self._files:
            return name
        head, _, rest = name.partition(".")
        return rest if rest in self._files else None

    def _require(self, name: str) -> str:
        stored = self._find(name)
        if stored is None:
            raise UserError(f"{self.model_dir} holds no tensor {name} (nor without its prefix)")
        return stored

    def _shape(self, stored: str) -> tuple[int, ...]:
        """A stored tensor's shape, from the files' headers (each file's read once)."""
        if self._shapes is None:
            from safetensors import safe_open

            self._shapes = {}
            for path in sorted(set(self._files.values())):
                with safe_open(path, framework="pt") as handle:
                    for name in handle.keys():
                        view = handle.get_slice(name)
                        self._shapes[name] = tuple(view.get_shape())
                        self._dtypes[name] = view.get_dtype()
        if self._mxfp4_scales(stored):  # MXFP4 blocks: the shape of the tensor they hold
            return dequantised_shape(self._shapes[stored])
        return self._shapes[stored]

    def _read_part(self, stored: str, index: int | None) -> np.ndarray:
        """A tensor as float32, or its ``index``-th slice along the first axis (one expert of a
        fused experts tensor: only that expert's bytes are read)."""
        if index is None:
            return self._read(stored)
        import torch
        from safetensors import safe_open

        packed = self._mxfp4_scales(stored)
        if packed is not None:  # gpt-oss's MXFP4: one expert's blocks and scales
            with safe_open(self._files[stored], framework="pt") as handle:
                blocks = handle.get_slice(stored)[index : index + 1]
            with safe_open(self._files[packed], framework="pt") as handle:
                return dequantise_expert(blocks, handle.get_slice(packed)[index : index + 1])
        scales = self._fp8_scales(stored)
        with safe_open(self._files[stored], framework="pt") as handle:
            view = handle.get_slice(stored)
            if scales is None:
                _check_float(stored, view.get_dtype())
            part = view[index : index + 1][0]
        if scales is not None:
            with safe_open(self._files[scales], framework="pt") as handle:
                return dequantise(part, handle.get_slice(scales)[index : index + 1][0], self._fp8_block)
        return np.ascontiguousarray(part.to(torch.float32).numpy())

    def _read(self, stored: str) -> np.ndarray:
        """One tensor as float32 (bf16 and fp16 are widened exactly), a slab of rows at a time into
        one array: widening a whole bf16 W_U at once would hold it twice over (1.5 GiB beside a
        1 GiB result for Llama-3.2-1B)."""
        import torch
        from safetensors import safe_open

        scales = self._fp8_scales(stored)
        if scales is not None:  # FP8 with block scales: dequantised whole (one expert, one projection)
            with safe_open(self._files[stored], framework="pt") as handle:
                weight = handle.get_tensor(stored)
            with safe_open(self._files[scales], framework="pt") as handle:
                return dequantise(weight, handle.get_tensor(scales), self._fp8_block)
        with safe_open(self._files[stored], framework="pt") as handle:
            view = handle.get_slice(stored)
            _check_float(stored, view.get_dtype())
            shape = tuple(view.get_shape())
            if len(shape) < 2 or view.get_dtype() == "F32":
                return np.ascontiguousarray(handle.get_tensor(stored).float().numpy())
            out = np.empty(shape, dtype=np.float32)
            rows = max(1, _SLAB_ELEMENTS // int(np.prod(shape[1:])))
            for start in range(0, shape[0], rows):
                torch.from_numpy(out[start : start + rows]).copy_(view[start : start + rows])
            return out

    def _unembed_name(self) -> str:
        for name in (self._top.get("unembed"), *_UNEMBED_ALIASES):
            if name and (stored := self._find(f"{name}.weight")) is not None:
                return stored
        return self._require(f"{self._top['embed']}.weight")  # tied: the embedding is W_U^T

    # --- the tensors a scan needs -------------------------------------------------------------
    def unembed(self) -> np.ndarray:
        matrix = self._read(self._unembed_name())  # [d_vocab, d_model] for lm_head and embeddings
        # A transposed view, not a copy: the scan keeps W_U's columns as rows, this very layout.
        return matrix.T

    def final_norm_weight(self) -> np.ndarray | None:
        if not self.info.has_final_norm:
            return None
        return self._read(self._require(f"{self._top['ln_final']}.weight")).reshape(-1)

    def final_norm(self) -> FinalNorm | None:
        weight = self.final_norm_weight()
        if weight is None:
            return None
        return FinalNorm(weight + np.float32(1.0) if self._offset else weight, centres=self._centres)

    def _mlp_tensor(self, layer: int, part: str) -> str:
        mlp = self._top["mlp"].rsplit(".", 1)[-1]
        return f"{self._top['blocks']}.{layer}.{mlp}.{self._mlp[part]}.weight"

    def _per_neuron(self, name: str, conv1d_rows_are_neurons: bool) -> np.ndarray:
        """A projection's weight as [d_mlp, d_model]: Linear layers store [out, in]; GPT-2's
        Conv1D stores [in, out] (so its output projection already has a row per neuron)."""
        matrix = self._read(self._require(name))
        d_mlp, d_model = self.info.d_mlp, self.info.d_model
        if self.architecture.startswith("GPT2"):
            return matrix if conv1d_rows_are_neurons else np.ascontiguousarray(matrix.T)
        if matrix.shape == (d_model, d_mlp):
            return np.ascontiguousarray(matrix.T)
        if matrix.shape == (d_mlp, d_model):
            return matrix
        raise UserError(f"{name} has shape {matrix.shape}, expected [{d_model}, {d_mlp}] or its transpose")

    def mlp_out(self, layer: int) -> np.ndarray:
        experts = self.info.experts(layer)
        if experts is not None:  # the layer's experts one after the other (engine.data.experts)
            return np.concatenate([self.expert_out(layer, g.expert) for g in experts.groups])
        return self._per_neuron(self._mlp_tensor(layer, "out"), conv1d_rows_are_neurons=True)

    def expert_out(self, layer: int, expert: ExpertLabel) -> np.ndarray:
        """One expert's W_out rows [d_expert, d_model]."""
        assert self.experts is not None
        return self.experts.down_rows(layer, expert)

    def expert_in(self, layer: int, expert: ExpertLabel) -> MlpInputs:
        """One expert's input rows (gate and up), [d_expert, d_model] each."""
        assert self.experts is not None
        return self.experts.input_rows(layer, expert)

    def router(self, layer: int) -> RouterWeights | None:
        """The layer's router weight [experts, d_model] and its other tensors, None if dense."""
        return None if self.experts is None else self.experts.router(layer)

    def mlp_in(self, layer: int) -> MlpInputs:
        experts = self.info.experts(layer)
        if experts is not None:
            assert self.experts is not None
            parts = [self.experts.input_rows(layer, g.expert) for g in experts.groups]
            gates = [p.gate for p in parts]
            up = np.concatenate([p.up for p in parts])
            if any(gate is None for gate in gates):
                return MlpInputs(up=up)
            return MlpInputs(up=up, gate=np.concatenate(gates))  # type: ignore[arg-type]
        up = self._per_neuron(self._mlp_tensor(layer, "in"), conv1d_rows_are_neurons=False)
        if "gate" not in self._mlp:
            return MlpInputs(up=up)
        return MlpInputs(up=up, gate=self._per_neuron(self._mlp_tensor(layer, "gate"), False))

    def mlp_norm(self, layer: int) -> FinalNorm | None:
        if "ln2" not in self._block:
            return None
        stored = self._find(f"{self._top['blocks']}.{layer}.{self._block['ln2']}.weight")
        if stored is None:
            return None
        weight = self._read(stored).reshape(-1)
        return FinalNorm(weight + np.float32(1.0) if self._offset else weight, centres=self._centres)

    def embedding(self) -> np.ndarray:
        return self._read(self._require(f"{self._top['embed']}.weight"))

    def embedding_rows(self) -> EmbeddingRows:
        from engine.sources.embedding_rows import FileRows

        stored = self._require(f"{self._top['embed']}.weight")
        try:
            return FileRows(self._files[stored], stored)
        except ValueError:  # a dtype that does not widen exactly (or a 1-D oddity): read it whole
            return ArrayRows(self._read(stored))

    def vocabulary(self) -> Vocabulary:
        from transformers import AutoTokenizer

        from engine.sources.bridge_source import _quiet_transformers, tokenizer_vocabulary

        _quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=False)
        return tokenizer_vocabulary(tokenizer, self.info.d_vocab)
