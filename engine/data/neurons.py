"""One layer's neurons with every per-neuron value derived from its scan, computed once.

Exports, summaries, the explorer's list and its detail view all read a ``LayerNeurons``: the class
label, the max-dot per unit norm and where it sits in the null baseline are derived here and nowhere
else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.dictionary import UnitNeighbours
from engine.data.diff import LayerDiff
from engine.data.evidence import LayerActivations
from engine.data.inputs import LayerInputs
from engine.data.null import NullBaseline, per_unit_max_dot
from engine.data.results import LayerResult, prediction_class


@dataclass(frozen=True)
class NeuronStats:
    """One neuron's numbers, as plain floats (what a record or a detail view shows)."""

    layer: int
    neuron: int
    max_dot: float
    per_unit: float  # max-dot of the unit direction (max-dot itself under the cosine projection)
    norm: float
    mean: float
    std: float
    skew: float
    kurtosis: float
    klass: str  # "prediction", "suppression" or ""
    null_z: float | None
    null_pct: float | None


@dataclass(frozen=True)
class LayerNeurons:
    result: LayerResult
    null: NullBaseline | None
    cosine: bool
    classes: np.ndarray  # [d_mlp] object: "prediction", "suppression" or ""
    per_unit: np.ndarray  # [d_mlp] float64
    null_z: np.ndarray | None  # [d_mlp] float64, None until the null baseline is known
    null_pct: np.ndarray | None  # [d_mlp] float64, in %
    evidence: LayerActivations | None = None  # from a corpus pass, when one was run for the layer
    inputs: LayerInputs | None = None  # the input side, when it was computed for the layer
    diff: LayerDiff | None = None  # against another checkpoint (engine.data.diff), when one is compared
    # Neurons and a dictionary's features side by side (engine.data.dictionary): for features,
    # their closest neurons; for neurons, their closest features, when a dictionary is open.
    neighbours: UnitNeighbours | None = None

    @classmethod
    def derive(
        cls,
        result: LayerResult,
        null: NullBaseline | None,
        cosine: bool,
        evidence: LayerActivations | None = None,
        inputs: LayerInputs | None = None,
        diff: LayerDiff | None = None,
        neighbours: UnitNeighbours | None = None,
    ) -> LayerNeurons:
        per_unit = per_unit_max_dot(result.max_dot, result.norm, cosine)
        null_z = null.z_score(per_unit) if null is not None else None
        null_pct = null.percentile(per_unit) if null is not None else None
        classes = prediction_class(result.kurtosis, result.skew)
        if evidence is not None and evidence.d_mlp != result.d_mlp:
            evidence = None
        if inputs is not None and inputs.d_mlp != result.d_mlp:
            inputs = None
        if diff is not None and diff.d_mlp != result.d_mlp:
            diff = None
        if neighbours is not None and neighbours.ids.shape[0] != result.d_mlp:
            neighbours = None
        return cls(
            result, null, cosine, classes, per_unit, null_z, null_pct, evidence, inputs, diff, neighbours
        )

    @property
    def lift(self) -> np.ndarray | None:
        return None if self.evidence is None else self.evidence.positive.lift

    @property
    def layer(self) -> int:
        return self.result.layer

    @property
    def d_mlp(self) -> int:
        return self.result.d_mlp

    def stats(self, neuron: int) -> NeuronStats:
        r = self.result
        return NeuronStats(
            layer=r.layer,
            neuron=int(neuron),
            max_dot=float(r.max_dot[neuron]),
            per_unit=float(self.per_unit[neuron]),
            norm=float(r.norm[neuron]),
            mean=float(r.mean[neuron]),
            std=float(r.std[neuron]),
            skew=float(r.skew[neuron]),
            kurtosis=float(r.kurtosis[neuron]),
            klass=str(self.classes[neuron]),
            null_z=None if self.null_z is None else float(self.null_z[neuron]),
            null_pct=None if self.null_pct is None else float(self.null_pct[neuron]),
        )
