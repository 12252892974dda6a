"""What the model does on one typed text, as plain arrays (``engine.activations.probe`` computes
them): the hardest-firing neurons per token, or every neuron of one layer. Position 0 and special
tokens are marked: their activations are on another scale (the first position is an attention
sink), so front ends show them apart and leave them out of rankings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PromptFiring:
    token_ids: np.ndarray  # [positions] int64, as tokenizer(text) gives them
    layers: list[int]
    neurons: np.ndarray  # [positions, len(layers), top] int64: hardest-firing neurons, best first
    activations: np.ndarray  # [positions, len(layers), top] float32
    marked: np.ndarray  # [positions] bool: position 0 or a special token (not ranked)


@dataclass
class LayerFiring:
    """Every neuron of one layer on each token of a text."""

    token_ids: np.ndarray  # [positions] int64
    layer: int
    activations: np.ndarray  # [positions, d_mlp] float32
    marked: np.ndarray  # [positions] bool: position 0 or a special token
