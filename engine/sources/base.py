"""What a scan needs from a model, whatever file format it comes from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from engine.tokens import Vocabulary


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


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


class ModelSource(Protocol):
    """Weights as float32 numpy arrays, in TransformerLens orientation."""

    info: ModelInfo

    def unembed(self) -> np.ndarray:
        """W_U, shape [d_model, d_vocab]."""
        ...

    def final_norm_weight(self) -> np.ndarray | None:
        """The final norm's stored weight, shape [d_model], or None when the model has none."""
        ...

    def final_norm(self) -> FinalNorm | None:
        """The final norm as folding needs it, or None when the model has none."""
        ...

    def mlp_out(self, layer: int) -> np.ndarray:
        """W_out of one layer, shape [d_mlp, d_model]."""
        ...

    def embedding(self) -> np.ndarray:
        """W_E, shape [d_vocab, d_model] (the embedding's own row count)."""
        ...

    def mlp_in(self, layer: int) -> MlpInputs:
        """The layer's MLP input rows (biases are not read: only directions are compared)."""
        ...

    def mlp_norm(self, layer: int) -> FinalNorm | None:
        """The norm right before the layer's MLP, as FinalNorm describes a norm, or None."""
        ...

    def vocabulary(self) -> Vocabulary: ...


def check_orientation(name: str, array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Return ``array`` as [rows, cols], transposing a [cols, rows] one.

    Some TransformerLens versions returned W_out transposed (TransformerLens issue 1554); a square
    matrix cannot be told apart, and is trusted as given.
    """
    if array.shape == (rows, cols):
        return array
    if array.shape == (cols, rows):
        return array.T
    raise ValueError(f"{name} has shape {tuple(array.shape)}, expected ({rows}, {cols})")
