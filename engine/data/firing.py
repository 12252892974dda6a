"""What the model does on one typed text, as plain arrays (``engine.activations.probe`` computes
them): per token the neurons that fire hardest for themselves (activation relative to each
neuron's own scale, ``engine.data.neuron_scale``), or every neuron of one layer. Position 0 and
special tokens are marked: their activations are on another scale (the first position is an
attention sink), so front ends show them apart and leave them out of rankings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PromptFiring:
    """Per position and layer, the ``top`` neurons with the largest |relative activation| (the
    activation divided by the neuron's own scale, sign kept), ties to the lower neuron."""

    token_ids: np.ndarray  # [positions] int64, as tokenizer(text) gives them
    layers: list[int]
    neurons: np.ndarray  # [positions, len(layers), top] int64: best first
    activations: np.ndarray  # [positions, len(layers), top] float32: the raw activation
    marked: np.ndarray  # [positions] bool: position 0 or a special token (not ranked)
    relative: np.ndarray  # [positions, len(layers), top] float64: activation / the neuron's scale
    scale: str  # which scale the ranking used, in words (engine.data.neuron_scale.NeuronScales)


@dataclass
class LayerFiring:
    """Every neuron of one layer on each token of a text."""

    token_ids: np.ndarray  # [positions] int64
    layer: int
    activations: np.ndarray  # [positions, d_mlp] float32
    marked: np.ndarray  # [positions] bool: position 0 or a special token
    # In a layer of experts, whether each neuron's expert ran at each position (its activation is
    # 0 where it did not); None for a dense layer, where every neuron runs everywhere.
    ran: np.ndarray | None = None  # [positions, d_mlp] bool
