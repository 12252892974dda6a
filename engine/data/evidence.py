"""A layer's activation evidence, per neuron, as plain arrays (computed by
``engine.activations.evidence`` at the end of a corpus pass): for each pole (the positive and the
negative activations) its top examples, density, how often the neuron fires right before one of
the tokens that pole promotes (lift), the direct effect of those firings on the logits of those
tokens, and how many distinct words it fires on; for a gated MLP the four gate/up sign cases; and
the histogram of activations over both signs.

Definitions (exports and tests rely on them), for a pole P of neuron i:

- the pole's **positions**: where the activation is > 0 (positive pole) or < 0 (negative pole);
  its **examples** are its positions by |activation|, largest first, ties by lower document, then
  lower position.
- ``T_i``: the tokens the pole promotes, from the weight scan (same top-k and projection): the
  neuron's ``promote`` tokens for the positive pole and its ``suppress`` tokens for the negative
  one (a negative activation writes -W_out, which promotes them).
- ``next token`` of a position: the token at position + 1 of the same document; a document's last
  position has none and counts nowhere (neither in a numerator nor in a denominator).
- ``base_rate``: share of the corpus's positions (with a next token) whose next token is in ``T_i``.
- ``hit_rate``: the same share among the pole's top ``lift_positions`` examples.
- ``lift`` = hit_rate / base_rate (NaN, exported as null, when base_rate is 0).
- ``density``: share of all positions in the pole (activation > 0, resp. < 0).
- ``direct_effect``: mean over the pole's top ``lift_positions`` examples p and over v in ``T_i``
  of ``a_i(p) * (W_out[i] ⊙ g) · W_U[:, v] / scale(p)``, with a_i(p) the activation as it is
  (negative for the negative pole), g the final norm's effective scale (its weight; 1 + weight for
  Gemma's RMSNorm) and scale(p) the final norm's scale at p (``ln_final.hook_scale``:
  sqrt(mean(x²) + eps) for RMSNorm); for a LayerNorm, W_out[i] is centred over d_model first, as
  the norm centres the residual. It is the neuron's contribution, through the frozen final norm,
  to the logits of the pole's own tokens: positive when the pole raises them.
- ``input_forms``: distinct normalised forms (``engine.scan.forms``) of the tokens at the pole's top
  ``lift_positions`` examples (the tokens it fires on); ``input_entropy``: the entropy in bits of
  their distribution (0: always the same word).
- ``cases`` (gated MLPs only): the share of all positions in each case of (sign of the gate's
  pre-activation, sign of up), > 0 being +; each case keeps its top examples by |activation|.
- ``attr_mean`` of a pole: the mean, over the pole's positions, of the neuron's direct logit
  attribution toward the position's predicted token (``engine.data.attribution``: the argmax of
  the logits there, a_i(p) · (W_out[i] ⊙ g) · W_U[:, t] / scale(p)); NaN when the pole has no
  position. Each attribution is rounded to a multiple of 2^-24 before it is summed, so the sums are
  exact whatever the order.
- ``attr_top1`` (per neuron): the share of all positions where the neuron's attribution toward the
  predicted token is the largest of its layer and positive (ties: the lower neuron).
- ``attr_dominant`` (per layer): the share of all positions where one neuron carries at least half
  of the layer's positive total, the sum of its neurons' positive attributions (when that is > 0).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np

CONTEXT_BEFORE = 8
CONTEXT_AFTER = 4
CASES = ("gate+up+", "gate+up-", "gate-up+", "gate-up-")  # (gate pre-activation sign, up sign)
CASE_SIGNS = (1.0, -1.0, -1.0, 1.0)  # the activation's sign in each case: sign(act(gate)) * sign(up)


@dataclass(frozen=True)
class EvidenceReading:
    """How much of its corpus a layer's evidence has read: ``read`` positions of the ``of`` the
    pass was set to read (its token cap, or the whole corpus: ``cap`` None). Incomplete evidence
    is exactly what a pass capped at ``read`` tokens gives (a stopped pass, or one still running)."""

    cap: int | None
    read: int
    of: int
    complete: bool

    @property
    def label(self) -> str:
        if self.complete:
            return f"{self.read:,} tokens" + ("" if self.cap is None else " (capped)")
        return f"{self.read:,} of {self.of:,} tokens read"


@dataclass
class PoleEvidence:
    """One pole of every neuron of a layer."""

    values: np.ndarray  # [d_mlp, keep] float32, the activation (signed) of each top example
    doc: np.ndarray  # [d_mlp, keep] int32 (-1: fewer positions in the pole than keep)
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
    input_forms: np.ndarray  # [d_mlp] int32
    input_entropy: np.ndarray  # [d_mlp] float64, NaN when the pole has no example with a form
    attr_mean: np.ndarray  # [d_mlp] float64, NaN when the pole has no position


@dataclass
class CaseEvidence:
    """The four gate/up sign cases (engine.activations.state.CASES) of every neuron of a layer."""

    shares: np.ndarray  # [d_mlp, 4] float64, share of all positions in each case
    values: np.ndarray  # [d_mlp, 4, examples] float32, signed activations, by |activation|
    doc: np.ndarray  # [d_mlp, 4, examples] int32 (-1: fewer positions in the case)
    position: np.ndarray  # [d_mlp, 4, examples] int32
    token_id: np.ndarray  # [d_mlp, 4, examples] int32
    context_ids: np.ndarray  # [d_mlp, 4, examples, BEFORE + 1 + AFTER] int32


@dataclass
class LayerActivations:
    layer: int
    n_positions: int
    positive: PoleEvidence
    negative: PoleEvidence
    cases: CaseEvidence | None  # None for a non-gated MLP
    act_hist: np.ndarray  # [d_mlp, 2 * BINS_PER_SIGN] int32 (engine.data.score_histogram bins)
    act_hist_top: int
    examples: int
    lift_positions: int
    attr_top1: np.ndarray  # [d_mlp] float64: share of positions where it tops its layer
    attr_dominant: float  # share of positions where one neuron carries half the positive total
    # In a layer of experts: per neuron, the share of positions the router sent to its expert
    # (engine.activations.expert_pass); the poles' density is then a share of those positions.
    routed: np.ndarray | None = None
    # ... and the mean weight the model gave its expert's output where it ran (the router's weight;
    # the shared expert's gate): activation x gate_mean is what it adds on average per unit.
    gate_mean: np.ndarray | None = None
    # A dictionary's features (engine.dictionaries): the share of its target's variance the
    # reconstruction explains over the corpus (1 - sum |y - y_hat|^2 / sum |y - mean y|^2); None
    # for neurons, and for a cross-layer transcoder (its layers' outputs add several dictionaries).
    explained_variance: float | None = None

    @property
    def d_mlp(self) -> int:
        return int(self.positive.density.shape[0])

    @property
    def dead_share(self) -> float:
        """The share of units that never fired (no activation of either sign) over the corpus."""
        fired = (self.positive.density > 0) | (self.negative.density > 0)
        return float(1.0 - fired.mean()) if fired.size else 0.0

    def pole(self, name: str) -> PoleEvidence:
        return self.positive if name == "positive" else self.negative

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (PoleEvidence, CaseEvidence)):
                arrays.update(
                    {f"{f.name}.{g.name}": np.asarray(getattr(value, g.name)) for g in fields(value)}
                )
            elif value is not None:
                arrays[f.name] = np.asarray(value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LayerActivations:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            names = set(archive.files)

            def part(kind, prefix: str):
                return kind(**{g.name: archive[f"{prefix}.{g.name}"] for g in fields(kind)})

            cases = part(CaseEvidence, "cases") if "cases.shares" in names else None
            return cls(
                layer=int(archive["layer"]),
                n_positions=int(archive["n_positions"]),
                positive=part(PoleEvidence, "positive"),
                negative=part(PoleEvidence, "negative"),
                cases=cases,
                act_hist=archive["act_hist"],
                act_hist_top=int(archive["act_hist_top"]),
                examples=int(archive["examples"]),
                lift_positions=int(archive["lift_positions"]),
                attr_top1=archive["attr_top1"],
                attr_dominant=float(archive["attr_dominant"]),
                routed=archive["routed"] if "routed" in names else None,
                gate_mean=archive["gate_mean"] if "gate_mean" in names else None,
                explained_variance=(
                    float(archive["explained_variance"]) if "explained_variance" in names else None
                ),
            )
