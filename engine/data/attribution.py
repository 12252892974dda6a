"""Which neurons made the token at each position of a text, as plain arrays
(``engine.activations.attribution`` computes them).

Definitions (the records, the explorer and the tests rely on them), for a text tokenized as the
model's tokenizer does by default, positions counted from 0:

- the **target** at position p: the argmax of the logits at p (the token the model predicts next),
  or one token given for every position; its **logit** is the model's logit of it at p.
- the **direct logit attribution** of neuron i of layer l at p:
  ``dla = a_l,i(p) · (W_out[l][i] · (g ⊙ W_U[:, t])) / scale(p)``, with a_l,i(p) the neuron's
  activation (``blocks.l.mlp.hook_post``), g the final norm's weight (1 + weight for Gemma's
  RMSNorm) and scale(p) the final norm's scale at p (``ln_final.hook_scale``: sqrt(mean(x²) + eps)
  for RMSNorm) held fixed; for a LayerNorm W_out[i] is centred over d_model first, as the norm
  centres the residual. Every part of the final residual read so adds up, with the norm's bias and
  the unembedding's, to the logit; the neurons' share of it is ``neuron_total``.
- ``neuron_total``: the sum of dla over every neuron of every layer attributed.
- ``share`` = dla / neuron_total (None when the total is 0).
- the **ablation** of one neuron at p: the change of the target's logit at p when that neuron's
  activation at p alone is set to 0 and the rest of the model recomputed (``delta_logit``);
  ``direct`` = −dla is what the weights predict of it, and ``indirect`` = delta_logit − direct is
  what the layers above (and the final norm's scale, which the ablation changes) add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NeuronAttribution:
    """One neuron's direct push on the target's logit at one position."""

    layer: int
    neuron: int
    activation: float
    dla: float
    share: float | None  # dla / neuron_total; None when the total is 0


@dataclass
class TextAttribution:
    """Per position, the ``top`` neurons with the largest dla (largest first) and the ``top`` with
    the most negative (most negative first), ties to the lower layer, then the lower neuron."""

    token_ids: np.ndarray  # [positions] int64
    layers: tuple[int, ...]  # the layers attributed
    target_ids: np.ndarray  # [positions] int64: the predicted token, or the one target given
    targeted: bool  # the target was given rather than predicted
    logits: np.ndarray  # [positions] float64: the target's logit
    scales: np.ndarray  # [positions] float64: the final norm's scale
    neuron_total: np.ndarray  # [positions] float64
    top_layer: np.ndarray  # [positions, top] int32
    top_neuron: np.ndarray  # [positions, top] int32
    top_activation: np.ndarray  # [positions, top] float32
    top_dla: np.ndarray  # [positions, top] float64
    low_layer: np.ndarray  # [positions, top] int32: the most negative first
    low_neuron: np.ndarray
    low_activation: np.ndarray
    low_dla: np.ndarray
    marked: np.ndarray  # [positions] bool: position 0 or a special token

    @property
    def n_positions(self) -> int:
        return int(self.token_ids.shape[0])

    def share(self, position: int, dla: float) -> float | None:
        total = float(self.neuron_total[position])
        return dla / total if total != 0 else None

    def neurons(self, position: int, against: bool = False) -> list[NeuronAttribution]:
        """The position's top neurons for the target (``against``: the most negative ones), best
        first. Only neurons on that side: where fewer than ``top`` push against it, the list is
        shorter, not filled up with neurons that push for it."""
        layer, neuron = (self.low_layer, self.low_neuron) if against else (self.top_layer, self.top_neuron)
        activation = self.low_activation if against else self.top_activation
        dla = self.low_dla if against else self.top_dla
        return [
            NeuronAttribution(
                int(layer[position, rank]),
                int(neuron[position, rank]),
                float(activation[position, rank]),
                float(dla[position, rank]),
                self.share(position, float(dla[position, rank])),
            )
            for rank in range(layer.shape[1])
            if (dla[position, rank] < 0 if against else dla[position, rank] > 0)
        ]


@dataclass
class NeuronAblation:
    """One neuron set to 0 at each position in turn (alone), and what that did to the target's logit
    there; the targets are those of the text's own run (``TextAttribution``'s definition)."""

    token_ids: np.ndarray  # [positions] int64
    layer: int
    neuron: int
    target_ids: np.ndarray  # [positions] int64
    targeted: bool
    logits: np.ndarray  # [positions] float64: the target's logit, the neuron as it is
    activation: np.ndarray  # [positions] float32: the neuron's activation
    delta_logit: np.ndarray  # [positions] float64: ablated minus clean logit of the target
    direct: np.ndarray  # [positions] float64: −dla, the weights' prediction of delta_logit
    marked: np.ndarray  # [positions] bool

    @property
    def indirect(self) -> np.ndarray:
        """What the ablation did beyond the direct path: the layers above, the final norm's scale."""
        return self.delta_logit - self.direct

    @property
    def n_positions(self) -> int:
        return int(self.token_ids.shape[0])
