"""A layer's scan results as plain numpy arrays, with a pickle-free byte form for the cache."""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from engine.data.experts import SHARED, LayerExperts


@dataclass
class LayerResult:
    """Everything one pass over a layer's score block produces.

    Per neuron (rows = d_mlp): the k tokens with the largest |score| (``top_*``, signed scores,
    ordered by |score|), the k largest (``promote_*``) and k most negative (``suppress_*``) scores,
    ``max_dot`` = max |score|, and moments of the neuron's scores over the whole vocabulary.
    Per token (columns = d_vocab): the N neurons with the largest |score| for that token.
    """

    layer: int
    top_ids: np.ndarray  # [d_mlp, k] int32
    top_dots: np.ndarray  # [d_mlp, k] float64, signed, ordered by |dot|
    promote_ids: np.ndarray  # [d_mlp, k] int32
    promote_dots: np.ndarray  # [d_mlp, k] float64, descending
    suppress_ids: np.ndarray  # [d_mlp, k] int32
    suppress_dots: np.ndarray  # [d_mlp, k] float64, ascending
    max_dot: np.ndarray  # [d_mlp] float64
    norm: np.ndarray  # [d_mlp] float64, |W_out[i]|
    mean: np.ndarray  # [d_mlp] float64
    std: np.ndarray  # [d_mlp] float64
    skew: np.ndarray  # [d_mlp] float64, mean(z^3)
    kurtosis: np.ndarray  # [d_mlp] float64, mean(z^4) (a Gaussian gives 3)
    token_neurons: np.ndarray  # [d_vocab, N + margin] int32, candidates by fast |dot| descending
    token_dots: np.ndarray  # [d_vocab, N + margin] float32, signed, fast precision: rescored when queried
    token_unit_best: np.ndarray  # [d_vocab] float32, max over neurons of |dot| / |W_out[i]| (coverage)
    token_unit_best_neuron: np.ndarray  # [d_vocab] int32, the neuron that reaches it
    score_hist: np.ndarray  # [d_mlp, 2 * BINS_PER_SIGN] int32: counts of score - mean (score_histogram)
    score_hist_top: int  # the histogram window's upper end, a biased float32 exponent
    device: str = "unknown"  # what computed the layer (cpu, cuda:0): part of the results, not the run
    products: str = "unknown"  # the fast product's precision (engine.scan.precision's label)
    # "One token or a concept?" per list (engine.scan.concepts), added by the engine after the scan.
    promote_forms: np.ndarray | None = None  # [d_mlp] int32
    promote_form_share: np.ndarray | None = None  # [d_mlp] float64
    promote_coherence: np.ndarray | None = None  # [d_mlp] float64
    promote_coherence_z: np.ndarray | None = None  # [d_mlp] float64
    promote_coherence_dir_z: np.ndarray | None = None  # [d_mlp] float64
    suppress_forms: np.ndarray | None = None
    suppress_form_share: np.ndarray | None = None
    suppress_coherence: np.ndarray | None = None
    suppress_coherence_z: np.ndarray | None = None
    suppress_coherence_dir_z: np.ndarray | None = None
    # A layer of experts (engine.data.experts): [groups, 2] int64 rows (expert, size) in flat
    # order, -1 for the shared expert; None for a dense MLP layer.
    expert_groups: np.ndarray | None = None
    # The dictionary whose features these are (engine.data.dictionary), None for the neurons.
    dictionary: str | None = None

    @cached_property
    def experts(self) -> LayerExperts | None:
        """The layer's experts (engine.data.experts), or None for a dense MLP layer."""
        if self.expert_groups is None:
            return None
        return LayerExperts.from_sizes(
            [(SHARED if int(e) < 0 else int(e), int(size)) for e, size in self.expert_groups.tolist()]
        )

    @property
    def d_mlp(self) -> int:
        return int(self.max_dot.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.top_ids.shape[1])

    @property
    def has_concepts(self) -> bool:
        return self.promote_forms is not None and self.promote_coherence_dir_z is not None

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {
            f.name: np.asarray(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LayerResult:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            values = {
                f.name: archive[f.name]
                for f in fields(cls)
                if f.name in archive.files or f.default is not None
            }
        values["layer"] = int(values["layer"])
        values["score_hist_top"] = int(values["score_hist_top"])
        values["device"] = str(values["device"])
        values["products"] = str(values["products"])
        if "dictionary" in values:
            values["dictionary"] = str(values["dictionary"])
        return cls(**values)


def prediction_class(kurtosis: np.ndarray, skew: np.ndarray) -> np.ndarray:
    """Gurnee et al.'s labels: 'prediction' (kurtosis > 10, skew > 0), 'suppression' (kurtosis > 10,
    skew < 0), else ''."""
    labels = np.full(kurtosis.shape, "", dtype=object)
    heavy = kurtosis > 10
    labels[heavy & (skew > 0)] = "prediction"
    labels[heavy & (skew < 0)] = "suppression"
    return labels


def expert_groups_array(experts: LayerExperts) -> np.ndarray:
    """``LayerResult.expert_groups`` for ``experts``."""
    rows = [(-1 if g.expert == SHARED else int(g.expert), g.size) for g in experts.groups]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)
