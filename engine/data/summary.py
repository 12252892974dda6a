"""Per-layer summaries: what the layer picker, the all-layers view and the README report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.neurons import LayerNeurons

STANDOUT_Z = 3.0  # a neuron "stands out" when its per-unit max-dot is 3 null standard deviations up


@dataclass(frozen=True)
class LayerSummary:
    layer: int
    n_neurons: int
    mean: float
    max: float
    p50: float
    p90: float
    p99: float
    kurtosis_p50: float
    kurtosis_p99: float
    n_standout: int  # null_z > STANDOUT_Z (0 when no null baseline is known)
    n_prediction: int
    n_suppression: int
    # Of the units standing out, those whose promoted or suppressed top tokens are mostly one word
    # (one_token_mask): units that look like one token.
    n_one_token: int = 0


def summarise(neurons: LayerNeurons) -> LayerSummary:
    values = neurons.result.max_dot
    kurtosis = np.nan_to_num(neurons.result.kurtosis, nan=0.0)
    standout = 0 if neurons.null_z is None else int((neurons.null_z > STANDOUT_Z).sum())
    p50, p90, p99 = np.quantile(values, [0.5, 0.9, 0.99])
    k50, k99 = np.quantile(kurtosis, [0.5, 0.99])
    return LayerSummary(
        layer=neurons.layer,
        n_neurons=neurons.d_mlp,
        mean=float(values.mean()),
        max=float(values.max()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        kurtosis_p50=float(k50),
        kurtosis_p99=float(k99),
        n_standout=standout,
        n_prediction=int((neurons.classes == "prediction").sum()),
        n_suppression=int((neurons.classes == "suppression").sum()),
        n_one_token=count_one_token(neurons),
    )


ONE_TOKEN_SHARE = 0.5  # the most frequent word of a top-token list carries at least this much of it


def one_token_mask(neurons: LayerNeurons) -> np.ndarray:
    """The units standing out from random directions (null z > 3) whose top promoted or suppressed
    tokens are mostly one word: the most frequent normalised form (" Paris", "Paris" and "PARIS,"
    are one; punctuation and whitespace are none) carries at least ``ONE_TOKEN_SHARE`` of the
    list's summed |dot| (engine.scan.concepts' ``form_share``). They look like one token."""
    result = neurons.result
    shares = (result.promote_form_share, result.suppress_form_share)
    if neurons.null_z is None or shares[0] is None or shares[1] is None:
        return np.zeros(result.d_mlp, dtype=bool)
    mostly_one_word = (shares[0] >= ONE_TOKEN_SHARE) | (shares[1] >= ONE_TOKEN_SHARE)
    return (neurons.null_z > STANDOUT_Z) & mostly_one_word


def count_one_token(neurons: LayerNeurons) -> int:
    return int(one_token_mask(neurons).sum())
