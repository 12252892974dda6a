"""A layer of experts' router read against the vocabulary: which tokens send work to each expert.

The router reads the MLP's input, the residual stream through the norm before the MLP. Read on
the weights alone, a token's residual is its embedding: ``logits[t, e] = W_r[e] · norm(W_E[t])``
(+ the router's bias). Per routed expert: the tokens with the largest logits, and the share of the
vocabulary that the model's own router (its softmax or sigmoid, its top-k, biases and groups)
sends to the expert when a token's embedding is all the residual holds. Plain arrays.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np


@dataclass
class LayerRouting:
    layer: int
    top_ids: np.ndarray  # [experts, k] int32: tokens by router logit, largest first
    top_logits: np.ndarray  # [experts, k] float64
    chosen_share: np.ndarray  # [experts] float64: share of the vocabulary routed to it
    per_token: int  # experts chosen per token

    @property
    def n_experts(self) -> int:
        return int(self.top_ids.shape[0])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LayerRouting:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            return cls(
                layer=int(archive["layer"]),
                top_ids=archive["top_ids"],
                top_logits=archive["top_logits"],
                chosen_share=archive["chosen_share"],
                per_token=int(archive["per_token"]),
            )
