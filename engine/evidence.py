"""A layer's activation evidence, per neuron, as plain arrays (computed by
``engine.activations.evidence`` at the end of a corpus pass): the top examples, density, the
activation histogram, and how often the neuron fires right before one of the tokens its weights
promote (lift), with the direct effect of those firings on the logits of those tokens.

Definitions (exports and tests rely on them):

- ``T_i``: neuron i's ``promote`` tokens from the weight scan (same top-k and projection).
- ``next token`` of a position: the token at position + 1 of the same document; a document's last
  position has none and counts nowhere (neither in a numerator nor in a denominator).
- ``base_rate``: share of the corpus's positions (with a next token) whose next token is in ``T_i``.
- ``hit_rate``: the same share among neuron i's top ``lift_positions`` examples.
- ``lift`` = hit_rate / base_rate (NaN, exported as null, when base_rate is 0).
- ``density``: share of all positions where the activation is > 0.
- ``direct_effect``: mean over the top ``lift_positions`` examples p and over v in ``T_i`` of
  ``a_i(p) * (W_out[i] ⊙ g) · W_U[:, v] / scale(p)``, where g is the final norm's effective scale
  (its weight; 1 + weight for Gemma's RMSNorm) and
  scale(p) the final norm's scale at p (``ln_final.hook_scale``: sqrt(mean(x²) + eps) for RMSNorm);
  for a LayerNorm, W_out[i] is centred over d_model first, as the norm centres the residual. It is
  the neuron's contribution, through the frozen final norm, to the logits of its own tokens.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np

CONTEXT_BEFORE = 8
CONTEXT_AFTER = 4


@dataclass
class LayerActivations:
    layer: int
    n_positions: int
    values: np.ndarray  # [d_mlp, keep] float32, activation of each top example, descending
    doc: np.ndarray  # [d_mlp, keep] int32 (-1: fewer positions than keep)
    position: np.ndarray  # [d_mlp, keep] int32
    token_id: np.ndarray  # [d_mlp, keep] int32
    next_id: np.ndarray  # [d_mlp, keep] int32, -1 where there is none
    context_ids: np.ndarray  # [d_mlp, examples, BEFORE + 1 + AFTER] int32: the firing token at
    # CONTEXT_BEFORE, -1 where the document (or the corpus) has no token
    density: np.ndarray  # [d_mlp] float64
    hit_rate: np.ndarray  # [d_mlp] float64
    base_rate: np.ndarray  # [d_mlp] float64
    lift: np.ndarray  # [d_mlp] float64, NaN when base_rate is 0
    direct_effect: np.ndarray  # [d_mlp] float64
    act_hist: np.ndarray  # [d_mlp, 2 * BINS_PER_SIGN] int32 (engine.score_histogram bins)
    act_hist_top: int
    examples: int
    lift_positions: int

    @property
    def d_mlp(self) -> int:
        return int(self.density.shape[0])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LayerActivations:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            values = {f.name: archive[f.name] for f in fields(cls)}
        for name in ("layer", "n_positions", "act_hist_top", "examples", "lift_positions"):
            values[name] = int(values[name])
        return cls(**values)
