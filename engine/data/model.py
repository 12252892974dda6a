"""What is known of a model without its weights (shapes, identity), and the small pieces of it that
a scan needs besides W_out and W_U (the final norm, a layer's input rows)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from engine.data.experts import LayerExperts


@dataclass(frozen=True)
class ModelInfo:
    """Shapes and identity of a model; cached so that a warm start needs no weights."""

    name: str
    fingerprint: str
    architecture: str
    n_layers: int
    d_model: int
    d_mlp: int
    d_vocab: int
    has_final_norm: bool
    # Mixture of experts: per layer, its experts (None for a dense MLP layer); None for a dense
    # model. ``d_mlp`` stays the dense layers' width: ``width(layer)`` is each layer's.
    layer_experts: tuple[LayerExperts | None, ...] | None = None
    experts_per_token: int = 0

    def experts(self, layer: int) -> LayerExperts | None:
        """The layer's experts, or None when its MLP is dense."""
        return None if self.layer_experts is None else self.layer_experts[layer]

    def width(self, layer: int) -> int:
        """The number of neurons of ``layer`` (all its experts' in a layer of experts)."""
        experts = self.experts(layer)
        return self.d_mlp if experts is None else experts.width

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layer_experts"] = (
            None
            if self.layer_experts is None
            else [None if e is None else e.to_json() for e in self.layer_experts]
        )
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        values = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        stored = values.get("layer_experts")
        if stored is not None:
            values["layer_experts"] = tuple(None if e is None else LayerExperts.from_json(e) for e in stored)
        return cls(**values)


@dataclass(frozen=True)
class FinalNorm:
    """What the final norm does to the residual, as folding it into W_U needs it.

    ``scale`` is the effective per-dimension factor: the weight for RMSNorm and LayerNorm, 1 + the
    weight for Gemma's RMSNorm. ``centres``: a LayerNorm subtracts the mean over d_model, so its
    folded W_U has each token's column centred over d_model too (as TransformerLens folds it).
    """

    scale: np.ndarray  # [d_model]
    centres: bool = False


@dataclass(frozen=True)
class MlpInputs:
    """A layer's input rows, [d_mlp, d_model] each: the gate's and up's for a gated MLP
    (activation = act(gate · x) * (up · x)), or ``up`` alone holding W_in for a plain one."""

    up: np.ndarray
    gate: np.ndarray | None = None


class EmbeddingRows(Protocol):
    """W_E [d_vocab, d_model] kept as its file stores it (bf16, fp16, quantised blocks, float32),
    handed out as float32 a few rows at a time (widening and dequantising are exact): the input
    side reads the embedding in blocks and never holds all of it in float32."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32 [stop - start, d_model]."""
        ...

    def take(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (int64, any order) as float32 [len(ids), d_model]."""
        ...


class ArrayRows:
    """An embedding already in memory as a float32 array [d_vocab, d_model] (a view is enough)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self._array.shape
        return int(rows), int(cols)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self._array[start:stop], dtype=np.float32)

    def take(self, ids: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self._array[ids], dtype=np.float32)
