"""The model's last step as a direct effect reads it: the final norm held fixed at each position's
scale, then the unembedding. A unit that writes w into the residual stream at position p pushes
token t's logit by ``through_final_norm(w) · W_U[:, t] / scale(p)``; the corpus pass's direct
effect (``engine.activations.evidence``), the per-position attribution and the corpus pass's
attribution columns all read it from here.

The predicted token and its logit are read from the final norm's output (``ln_final.hook_out``)
rather than from the model's logits, so that a pass never holds [positions, vocabulary] logits:
the argmax is taken over a few hundred positions at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ARGMAX_ROWS = 256  # positions per chunk of logits when finding the predicted token
FINAL_SCALE = "ln_final.hook_scale"
FINAL_OUT = "ln_final.hook_out"


def through_final_norm(rows, norm_weight, centred: bool):
    """Rows [n, d_model] (numpy or torch, float64) as the frozen final norm passes them: centred
    over d_model for a LayerNorm (it removes the residual's mean), then times the norm's weight g
    (None: no weight). Their dot with W_U[:, t], over the position's scale, is a direct push on t."""
    if centred:
        rows = rows - rows.mean(-1, keepdims=True)
    if norm_weight is not None:
        rows = rows * norm_weight
    return rows


class FinalReadout:
    """The final norm's weight, whether it centres, the unembedding and its bias, and a final soft
    cap on the logits (Gemma 2), read from a TransformerBridge on ``device``."""

    def __init__(self, bridge, device: torch.device) -> None:
        from engine.sources.bridge_source import bridge_final_norm

        norm = bridge_final_norm(bridge)
        self.device = device
        self.norm_weight = (
            None if norm is None else torch.from_numpy(norm.scale).to(device=device, dtype=torch.float64)
        )
        self.centred = norm is not None and norm.centres
        self.unembed = bridge.W_U.detach()  # [d_model, d_vocab], the model's own: never copied whole
        self.bias = bridge.b_U.detach()
        cap = float(getattr(bridge.cfg, "output_logits_soft_cap", 0.0) or 0.0)
        self.soft_cap = cap if cap > 0 else None

    def predicted(self, normalized: torch.Tensor) -> torch.Tensor:
        """[n] the argmax of the logits of the final norm's outputs ``normalized`` [n, d_model]
        (the first of equal maxima)."""
        found = []
        for start in range(0, normalized.shape[0], ARGMAX_ROWS):
            part = normalized[start : start + ARGMAX_ROWS].to(self.unembed.dtype)
            found.append((part @ self.unembed + self.bias).argmax(dim=-1))
        return torch.cat(found) if found else torch.zeros(0, dtype=torch.long, device=normalized.device)

    def logits(self, normalized: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[n] float64: the logit of ``targets[k]`` at row k of ``normalized``."""
        columns = self.unembed[:, targets].double()  # [d_model, n]
        values = (normalized.double() * columns.T).sum(-1) + self.bias[targets].double()
        if self.soft_cap is not None:
            values = self.soft_cap * torch.tanh(values / self.soft_cap)
        return values

    def target_weights(self, w_out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[n, d_mlp] float64: ``through_final_norm(W_out[i]) · W_U[:, targets[k]]`` for every
        neuron i of a layer (``w_out`` [d_mlp, d_model]); one product per distinct target."""
        distinct, inverse = torch.unique(targets, return_inverse=True)
        rows = through_final_norm(w_out.double(), self.norm_weight, self.centred)
        weights = rows @ self.unembed[:, distinct].double()  # [d_mlp, distinct]
        return weights.T[inverse]

    def dla(
        self, activations: torch.Tensor, w_out: torch.Tensor, targets: torch.Tensor, scales: torch.Tensor
    ) -> torch.Tensor:
        """[n, d_mlp] float64: each neuron's direct logit attribution at each of n positions,
        ``activations`` [n, d_mlp] toward ``targets`` [n], through ``scales`` [n] held fixed."""
        weights = self.target_weights(w_out, targets)
        return activations.double() * weights / scales.double()[:, None]


@dataclass
class Readouts:
    """The final norm's readout at every position of a corpus a pass reads (global indices): its
    scale and the predicted token (0 where not read yet)."""

    scales: np.ndarray  # [positions] float64
    predicted: np.ndarray  # [positions] int64

    @classmethod
    def empty(cls, n_positions: int) -> Readouts:
        return cls(np.zeros(n_positions, dtype=np.float64), np.zeros(n_positions, dtype=np.int64))

    def fill(self, start: int, stop: int, scales: np.ndarray, predicted: np.ndarray) -> None:
        """Positions [start, stop) from another pass's arrays (global indices alike)."""
        self.scales[start:stop] = scales[start:stop]
        self.predicted[start:stop] = predicted[start:stop]

    def clear(self) -> None:
        self.scales[:] = 0.0
        self.predicted[:] = 0
