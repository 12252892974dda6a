"""Weights read straight from a GGUF file with the ``gguf`` package: no model is built, and only
the tensors a scan needs are dequantised."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.experts import ExpertLabel
from engine.data.model import EmbeddingRows, FinalNorm, MlpInputs, ModelInfo
from engine.data.tokens import Vocabulary, stored_token_to_bytes
from engine.errors import UserError
from engine.sources.base import check_orientation
from engine.sources.gguf_experts import GGUFExperts, has_experts
from engine.sources.gguf_model import dequantise
from engine.sources.header import read_gguf_header

# GGUF token types (llama.cpp's LLAMA_TOKEN_TYPE_*): control and user-defined tokens are literal text.
_LITERAL_TOKEN_TYPES = {3, 4}
_TOKENIZER_STYLES = {"gpt2": "byte_level", "llama": "sentencepiece"}
_VOCABULARY_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
_PLAIN_TYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class GGUFSource:
    """A GGUF checkpoint (llama.cpp layout: ``blk.N.ffn_down.weight``, ``output.weight``...)."""

    def __init__(self, path: Path, fingerprint: str, display_name: str | None = None):
        self.path = path
        # The header is walked directly (the gguf package's reader builds an object per token and
        # per merge: seconds and 160 MiB for a 49k vocabulary); tensors are views of one memory map.
        self._header = read_gguf_header(path, arrays=_VOCABULARY_ARRAYS)
        self._tensors = self._header.tensor_infos
        try:
            self._map = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read GGUF file {path}: {error}") from error
        arch = self._string_field("general.architecture")
        try:
            n_layers = int(self._scalar_field(f"{arch}.block_count"))
            d_model = int(self._scalar_field(f"{arch}.embedding_length"))
            moe = has_experts(self._tensors)
            d_mlp = (
                self._count(f"{arch}.feed_forward_length")
                if moe
                else int(self._scalar_field(f"{arch}.feed_forward_length"))
            )
        except KeyError as missing:
            raise UserError(
                f"GGUF file {path} lacks {missing}: it does not look like a transformer language model"
            ) from None
        self.experts: GGUFExperts | None = None
        if moe:  # llama.cpp's stacked experts (engine.sources.gguf_experts)
            count = self._count(f"{arch}.expert_count")
            self.experts = GGUFExperts(
                self._tensors, n_layers, count, self._tensor_data, self._dequantise_part
            )
        elif "blk.0.ffn_down.weight" not in self._tensors:
            raise UserError(
                f"GGUF file {path} has no blk.0.ffn_down.weight nor ffn_down_exps "
                "(a non-transformer model?); neuron-tui reads MLP layers, dense or of experts"
            )
        self._unembed_name = "output.weight" if "output.weight" in self._tensors else "token_embd.weight"
        d_vocab = self._tensor_rows(self._unembed_name)
        self.info = ModelInfo(
            name=display_name or path.name,
            fingerprint=fingerprint,
            architecture=arch,
            n_layers=n_layers,
            d_model=d_model,
            d_mlp=d_mlp,
            d_vocab=d_vocab,
            has_final_norm="output_norm.weight" in self._tensors,
            layer_experts=None if self.experts is None else self.experts.layer_experts,
            experts_per_token=self._count(f"{arch}.expert_used_count"),
        )

    def _count(self, key: str) -> int:
        """A whole-number field that a file may lack (0 then)."""
        try:
            return int(self._scalar_field(key))
        except KeyError:
            return 0

    def _string_field(self, key: str) -> str:
        value = self._header.metadata.get(key)
        if not isinstance(value, str):
            raise UserError(f"GGUF file {self.path} lacks {key}: it does not look like a model file")
        return value

    def _scalar_field(self, key: str) -> float:
        value = self._header.metadata.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise KeyError(key)
        return value

    def _tensor_rows(self, name: str) -> int:
        # gguf lists dimensions innermost first: [d_model, d_vocab] for an embedding.
        return int(self._tensors[name].shape[-1])

    def _tensor_data(self, name: str):
        """(the tensor's bytes as the gguf package lays them out, its quantisation type): plain
        types as typed arrays in numpy order, quantised ones as rows of blocks' bytes."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import quant_shape_to_byte_shape

        info = self._tensors[name]
        try:
            kind = GGMLQuantizationType(info.ggml_type)
            block, type_size = GGML_QUANT_SIZES[kind]
        except (ValueError, KeyError):
            raise UserError(f"{name} in {self.path} has an unknown tensor type {info.ggml_type}") from None
        n_elements = int(np.prod(info.shape))
        start = self._header.data_start + info.offset
        stop = start + n_elements * type_size // block
        if stop > len(self._map):
            raise UserError(
                f"GGUF file {self.path} ends inside tensor {name}: check that the file is complete"
            )
        raw = self._map[start:stop]
        shape = tuple(reversed(info.shape))
        if kind.name in _PLAIN_TYPES:
            return raw.view(_PLAIN_TYPES[kind.name]).reshape(shape), kind
        return raw.reshape(quant_shape_to_byte_shape(shape, kind)), kind

    def _dequantised(self, name: str) -> np.ndarray:
        """The tensor as float32, dequantised a slab of rows at a time into one array, so the
        peak memory is the result plus one slab (not several full-size temporaries)."""
        data, kind = self._tensor_data(name)
        try:
            return dequantise(data, kind)
        except (NotImplementedError, ValueError) as error:
            raise UserError(
                f"cannot dequantise {name} ({kind.name}) in {self.path}: {error}; "
                "use a GGUF with a type the gguf package reads (F32, F16, BF16, Q8_0, Q4_K, ...)"
            ) from error

    def unembed(self) -> np.ndarray:
        embedding = self._dequantised(self._unembed_name)  # [d_vocab, d_model]
        return check_orientation("W_U", embedding.T, self.info.d_model, self.info.d_vocab)

    def final_norm(self) -> FinalNorm | None:
        # llama.cpp's converters store the effective RMSNorm scale (Gemma's 1 + w already added).
        weight = self.final_norm_weight()
        return None if weight is None else FinalNorm(weight, centres=False)

    def final_norm_weight(self) -> np.ndarray | None:
        if not self.info.has_final_norm:
            return None
        return self._dequantised("output_norm.weight").reshape(-1)

    def _dequantise_part(self, name: str, data: np.ndarray, kind) -> np.ndarray:
        """A slice of a tensor's data (one expert) as float32."""
        try:
            return np.array(dequantise(data, kind), dtype=np.float32)
        except (NotImplementedError, ValueError) as error:
            raise UserError(f"cannot dequantise {name} ({kind}) in {self.path}: {error}") from error

    def expert_out(self, layer: int, expert: ExpertLabel) -> np.ndarray:
        if self.experts is None:
            raise UserError(f"layer {layer} has no experts")
        return self.experts.down_rows(layer, expert)

    def expert_in(self, layer: int, expert: ExpertLabel) -> MlpInputs:
        if self.experts is None:
            raise UserError(f"layer {layer} has no experts")
        return self.experts.input_rows(layer, expert)

    def router(self, layer: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        return None if self.experts is None else self.experts.router(layer)

    def mlp_out(self, layer: int) -> np.ndarray:
        experts = self.info.experts(layer)
        if experts is not None:
            return np.concatenate([self.expert_out(layer, g.expert) for g in experts.groups])
        down = self._dequantised(f"blk.{layer}.ffn_down.weight")  # [d_model, d_mlp], as nn.Linear stores it
        return np.ascontiguousarray(check_orientation("W_out", down.T, self.info.d_mlp, self.info.d_model))

    def mlp_in(self, layer: int) -> MlpInputs:
        experts = self.info.experts(layer)
        if experts is not None and self.experts is not None:
            parts = [self.experts.input_rows(layer, g.expert) for g in experts.groups]
            up = np.concatenate([p.up for p in parts])
            gates = [p.gate for p in parts]
            if any(gate is None for gate in gates):
                return MlpInputs(up=up)
            return MlpInputs(up=up, gate=np.concatenate(gates))  # type: ignore[arg-type]
        d_mlp, d_model = self.info.d_mlp, self.info.d_model

        def rows(name: str) -> np.ndarray:  # [d_mlp, d_model], as nn.Linear stores an input projection
            return np.ascontiguousarray(check_orientation(name, self._dequantised(name), d_mlp, d_model))

        if f"blk.{layer}.ffn_up.weight" not in self._tensors:
            raise UserError(
                f"GGUF file {self.path} has no blk.{layer}.ffn_up.weight: its MLP inputs cannot be read"
            )
        up = rows(f"blk.{layer}.ffn_up.weight")
        gate_name = f"blk.{layer}.ffn_gate.weight"
        return MlpInputs(up=up, gate=rows(gate_name) if gate_name in self._tensors else None)

    def mlp_norm(self, layer: int) -> FinalNorm | None:
        name = f"blk.{layer}.ffn_norm.weight"
        if name not in self._tensors:
            return None
        # The effective scale, as for the final norm; a LayerNorm is the one with a bias.
        centres = f"blk.{layer}.ffn_norm.bias" in self._tensors
        return FinalNorm(self._dequantised(name).reshape(-1), centres=centres)

    def embedding(self) -> np.ndarray:
        embedding = self._dequantised("token_embd.weight")  # [d_vocab, d_model]
        return check_orientation("W_E", embedding, embedding.shape[0], self.info.d_model)

    def embedding_rows(self) -> EmbeddingRows:
        data, kind = self._tensor_data("token_embd.weight")
        rows = QuantisedRows(data, kind)
        if rows.shape[1] != self.info.d_model:
            raise UserError(f"token_embd.weight in {self.path} is not [d_vocab, {self.info.d_model}]")
        return rows

    def vocabulary(self) -> Vocabulary:
        arrays = self._header.arrays
        if "tokenizer.ggml.tokens" not in arrays:
            raise UserError(f"GGUF file {self.path} lacks tokenizer.ggml.tokens: it carries no vocabulary")
        stored = [raw.decode("utf-8", errors="replace") for raw in arrays["tokenizer.ggml.tokens"]]
        model = self._header.metadata.get("tokenizer.ggml.model", "gpt2")
        style = _TOKENIZER_STYLES.get(model, "literal") if isinstance(model, str) else "literal"
        types = arrays.get("tokenizer.ggml.token_type") or [1] * len(stored)
        tokens = [
            stored_token_to_bytes(text, style, special=kind in _LITERAL_TOKEN_TYPES)
            for text, kind in zip(stored, types)
        ]
        return Vocabulary.from_bytes(tokens).padded_to(self.info.d_vocab)


class QuantisedRows:
    """A GGUF tensor's rows as stored (quantised blocks or a plain type, a view of the file's
    memory map), dequantised to float32 a few rows at a time."""

    def __init__(self, data: np.ndarray, kind) -> None:
        self._data, self._kind = data, kind
        self._width = self._float32(data[:1]).shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self._data.shape[0]), int(self._width)

    def _float32(self, part: np.ndarray) -> np.ndarray:
        import gguf

        array = gguf.quants.dequantize(part, self._kind)
        # Plain types come back as read-only views of the memory map: copy those out.
        return np.array(array, dtype=np.float32, order="C", copy=not array.flags.writeable)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._float32(self._data[start:stop])

    def take(self, ids: np.ndarray) -> np.ndarray:
        return self._float32(self._data[ids])
