"""A null baseline for max-dot: how aligned would a random direction look?

Random unit directions, isotropic Gaussian in the residual stream and seeded, are projected exactly
like neurons; their max |score| gives a distribution that a neuron's max-dot per unit norm is compared
with. The assumption (stated in the README): a neuron is "aligned" if its direction meets some token
harder than an isotropic random direction of the same norm does. Real residual streams are
anisotropic, so this is a floor for chance, not a full significance test. The baseline depends on
W_U and the projection only, so one serves every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NULL_SAMPLES = 2048
NULL_SEED = 0


@dataclass(frozen=True)
class NullBaseline:
    values: np.ndarray  # sorted max |score| of unit random directions

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def std(self) -> float:
        return float(self.values.std())

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.values, q))

    def z_score(self, per_unit_max_dot: np.ndarray) -> np.ndarray:
        return (per_unit_max_dot - self.mean) / max(self.std, np.finfo(np.float64).tiny)

    def percentile(self, per_unit_max_dot: np.ndarray) -> np.ndarray:
        """Share of random directions (in %) whose max |score| is below the given values."""
        return 100.0 * np.searchsorted(self.values, per_unit_max_dot, side="left") / len(self.values)


def per_unit_max_dot(max_dot: np.ndarray, norm: np.ndarray, cosine: bool) -> np.ndarray:
    """max-dot of a neuron's unit direction (under --cosine it already is)."""
    if cosine:
        return max_dot
    return max_dot / np.maximum(norm, np.finfo(np.float64).tiny)
