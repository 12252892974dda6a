"""The input side of a layer's neurons, from the weights alone: which tokens' embeddings drive each
neuron directly, and how its input rows point relative to its output row.

Definitions (exports and tests rely on them):

- a neuron's **input rows**: its gate row and its up row in a gated MLP (activation =
  act(gate · x) * (up · x)); its W_in row in a plain one. Each is read as the residual stream
  sees it: ``w_eff = γ ⊙ w``, γ the effective scale of the norm before the MLP (its weight; 1 +
  weight for Gemma's RMSNorm), centred over d_model for a LayerNorm (which centres the residual).
  This is the row TransformerLens's norm folding produces.
- **reads**: per input row, the k tokens v with the largest cos(W_E[v], w_eff) (``plus``) and the
  k with the most negative (``minus``), ties by lower token id; cosines in float64. A token in
  ``plus`` of the gate raises the gate's pre-activation when it sits in the residual stream.
- ``cos_out``: cos(w_eff, w_out) per input row, w_out centred over d_model for a LayerNorm model
  (as TransformerLens centres writing weights); ``cos_gate_up``: cos(gate_eff, up_eff).
- **IO class** (Gerstner & Schütze, "Understanding Gated Neurons in Transformers from Their
  Input-Output Functionality", arXiv 2505.17936), threshold t = 0.5. The weights are first
  refactored so that cos(w_gate, w_in) >= 0 (flipping w_in and w_out together, which leaves the
  neuron's function unchanged); then, with lo = cos(w_in, w_out), go = cos(w_gate, w_out),
  gl = cos(w_gate, w_in):

  ======================================  ====================================================
  enrichment                              lo > t, |go| > t, copysign(gl, go) > t
  atypical enrichment                     lo > t, |go| > t, copysign(gl, go) <= t
  conditional enrichment                  lo > t, |go| <= t, |gl| <= t
  atypical conditional enrichment         lo > t, |go| <= t, |gl| > t
  proportional change                     |lo| <= t, |go| > t, |gl| <= t
  atypical proportional change            |lo| <= t, |go| > t, |gl| > t
  orthogonal output                       everything else (|lo| <= t, |go| <= t)
  depletion                               lo < -t, |go| > t, copysign(gl, go) < -t
  atypical depletion                      lo < -t, |go| > t, copysign(gl, go) >= -t
  conditional depletion                   lo < -t, |go| <= t, |gl| <= t
  atypical conditional depletion          lo < -t, |go| <= t, |gl| > t
  ======================================  ====================================================

  An enrichment neuron adds to the residual much the direction it reads; a depletion neuron
  removes it. A plain MLP has no gate: its class is taken from lo alone (enrichment above t,
  depletion below -t, orthogonal output otherwise), a reduction of ours, not the paper's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np

IO_THRESHOLD = 0.5
IO_CLASSES = (
    "enrichment",
    "atypical enrichment",
    "conditional enrichment",
    "atypical conditional enrichment",
    "proportional change",
    "atypical proportional change",
    "orthogonal output",
    "depletion",
    "atypical depletion",
    "conditional depletion",
    "atypical conditional depletion",
)


def io_classes(
    cos_up_out: np.ndarray, cos_gate_out: np.ndarray | None, cos_gate_up: np.ndarray | None
) -> np.ndarray:
    """[d_mlp] int8 index into IO_CLASSES, from raw cosines (the refactoring is applied here)."""
    t = IO_THRESHOLD
    lo = cos_up_out
    out = np.full(lo.shape, IO_CLASSES.index("orthogonal output"), dtype=np.int8)
    if cos_gate_out is None or cos_gate_up is None:
        out[lo > t] = IO_CLASSES.index("enrichment")
        out[lo < -t] = IO_CLASSES.index("depletion")
        return out
    flip = cos_gate_up < 0  # refactor: cos(w_gate, w_in) >= 0, with w_in and w_out flipped together
    gl = np.where(flip, -cos_gate_up, cos_gate_up)
    go = np.where(flip, -cos_gate_out, cos_gate_out)
    signed = np.copysign(gl, go)
    rules = [
        ("enrichment", (lo > t) & (np.abs(go) > t) & (signed > t)),
        ("atypical enrichment", (lo > t) & (np.abs(go) > t) & (signed <= t)),
        ("conditional enrichment", (lo > t) & (np.abs(go) <= t) & (np.abs(gl) <= t)),
        ("atypical conditional enrichment", (lo > t) & (np.abs(go) <= t) & (np.abs(gl) > t)),
        ("proportional change", (np.abs(lo) <= t) & (np.abs(go) > t) & (np.abs(gl) <= t)),
        ("atypical proportional change", (np.abs(lo) <= t) & (np.abs(go) > t) & (np.abs(gl) > t)),
        ("depletion", (lo < -t) & (np.abs(go) > t) & (signed < -t)),
        ("atypical depletion", (lo < -t) & (np.abs(go) > t) & (signed >= -t)),
        ("conditional depletion", (lo < -t) & (np.abs(go) <= t) & (np.abs(gl) <= t)),
        ("atypical conditional depletion", (lo < -t) & (np.abs(go) <= t) & (np.abs(gl) > t)),
    ]
    for name, where in rules:
        out[where] = IO_CLASSES.index(name)
    return out


@dataclass
class LayerInputs:
    layer: int
    gated: bool
    plus_ids: np.ndarray  # [rows, d_mlp, k] int32: rows are (gate, up) when gated, else (in,)
    plus_cos: np.ndarray  # [rows, d_mlp, k] float64, descending
    minus_ids: np.ndarray  # [rows, d_mlp, k] int32
    minus_cos: np.ndarray  # [rows, d_mlp, k] float64, ascending
    cos_out: np.ndarray  # [rows, d_mlp] float64
    cos_gate_up: np.ndarray  # [d_mlp] float64, NaN for a plain MLP
    io_class: np.ndarray  # [d_mlp] int8 into IO_CLASSES

    @classmethod
    def joined(cls, parts: list[LayerInputs]) -> LayerInputs:
        """Parts of one layer (its experts, in flat order) as the layer's input side."""
        first = parts[0]
        along = {"plus_ids": 1, "plus_cos": 1, "minus_ids": 1, "minus_cos": 1, "cos_out": 1}
        values = {
            name: np.concatenate([getattr(p, name) for p in parts], axis=axis) for name, axis in along.items()
        }
        return cls(
            layer=first.layer,
            gated=first.gated,
            cos_gate_up=np.concatenate([p.cos_gate_up for p in parts]),
            io_class=np.concatenate([p.io_class for p in parts]),
            **values,
        )

    @property
    def rows(self) -> tuple[str, ...]:
        return ("gate", "up") if self.gated else ("in",)

    @property
    def d_mlp(self) -> int:
        return int(self.io_class.shape[0])

    def row(self, name: str) -> int:
        return self.rows.index(name)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LayerInputs:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            values = {f.name: archive[f.name] for f in fields(cls)}
        values["layer"], values["gated"] = int(values["layer"]), bool(values["gated"])
        return cls(**values)
