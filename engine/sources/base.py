"""What a scan needs from a model, whatever file format it comes from."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.data.experts import ExpertLabel
from engine.data.model import EmbeddingRows, FinalNorm, MlpInputs, ModelInfo
from engine.data.tokens import Vocabulary
from engine.errors import UserError


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
        """W_E, shape [d_vocab, d_model] (the embedding's own row count), float32."""
        ...

    def embedding_rows(self) -> EmbeddingRows:
        """W_E as stored, read a block of rows at a time (the input side's way: never all of it
        in float32)."""
        ...

    def mlp_in(self, layer: int) -> MlpInputs:
        """The layer's MLP input rows (biases are not read: only directions are compared)."""
        ...

    def mlp_norm(self, layer: int) -> FinalNorm | None:
        """The norm right before the layer's MLP, as FinalNorm describes a norm, or None."""
        ...

    def vocabulary(self) -> Vocabulary: ...

    def expert_out(self, layer: int, expert: ExpertLabel) -> np.ndarray:
        """One expert's W_out rows [d_expert, d_model], in a layer of experts
        (``info.experts(layer)``; engine.data.experts)."""
        ...

    def expert_in(self, layer: int, expert: ExpertLabel) -> MlpInputs:
        """One expert's input rows, [d_expert, d_model] each."""
        ...

    def router(self, layer: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """A layer of experts' router weight [experts, d_model] and its other tensors by name (a
        bias, a score correction); None for a dense layer."""
        ...


class DenseOnly:
    """What a source that reads dense models only says of experts: it has none."""

    def expert_out(self, layer: int, expert: ExpertLabel) -> np.ndarray:
        raise UserError(f"layer {layer} has no experts that this loader can read")

    def expert_in(self, layer: int, expert: ExpertLabel) -> MlpInputs:
        raise UserError(f"layer {layer} has no experts that this loader can read")

    def router(self, layer: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        return None


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
