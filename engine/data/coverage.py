"""Vocabulary coverage, the seed's open question: does every token have a neuron aimed at it?

A token counts as covered in a layer when some neuron's direction meets it harder than a random
unit direction meets its best token in 99 of 100 draws: max over neurons of |dot| / |W_out[i]|
above the null baseline's 99th percentile. Whole-model coverage takes the best layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from engine.data.experts import LayerExperts, record_fields
from engine.data.null import NullBaseline
from engine.data.results import LayerResult
from engine.data.tokens import Vocabulary

COVERAGE_QUANTILE = 0.99


@dataclass(frozen=True)
class Coverage:
    threshold: float  # the null's 99th percentile, per unit norm
    layers: list[int]
    covered_per_layer: dict[int, int]
    best_unit: np.ndarray  # [d_vocab] best |dot| per unit norm over the layers
    best_layer: np.ndarray  # [d_vocab]
    best_neuron: np.ndarray  # [d_vocab]
    covered_layers: np.ndarray  # [d_vocab] in how many layers the token is covered
    # per layer, its experts (engine.data.experts) where it has some: best_neuron is flat there
    layer_experts: dict[int, LayerExperts] = field(default_factory=dict)
    layer_dictionaries: dict[int, str] = field(default_factory=dict)  # a dictionary's features, per layer

    @property
    def d_vocab(self) -> int:
        return int(self.best_unit.shape[0])

    def share(self, layer: int) -> float:
        return self.covered_per_layer[layer] / self.d_vocab

    @property
    def covered(self) -> np.ndarray:
        return self.best_unit > self.threshold

    @property
    def overall_share(self) -> float:
        return float(self.covered.mean())

    def ranked(self, count: int, best: bool) -> np.ndarray:
        """Token ids with the highest (best) or lowest best-unit alignment."""
        order = np.argsort(-self.best_unit if best else self.best_unit, kind="stable")
        return order[:count]


def compute_coverage(results: list[LayerResult], null: NullBaseline) -> Coverage:
    per_layer = {r.layer: (r.token_unit_best, r.token_unit_best_neuron) for r in results}
    experts = {r.layer: r.experts for r in results if r.experts is not None}
    dictionaries = {r.layer: r.dictionary for r in results if r.dictionary is not None}
    return replace(
        coverage_from_layers(per_layer, null), layer_experts=experts, layer_dictionaries=dictionaries
    )


def coverage_from_layers(per_layer: dict[int, tuple[np.ndarray, np.ndarray]], null: NullBaseline) -> Coverage:
    """Coverage from each layer's (best |dot| per unit norm, its neuron) per token."""
    threshold = null.quantile(COVERAGE_QUANTILE)
    layers = sorted(per_layer)
    stacked = np.stack([per_layer[layer][0].astype(np.float64) for layer in layers])  # [L, V]
    neurons = np.stack([per_layer[layer][1] for layer in layers])
    best_index = stacked.argmax(axis=0)
    columns = np.arange(stacked.shape[1])
    return Coverage(
        threshold=threshold,
        layers=layers,
        covered_per_layer={layer: int((row > threshold).sum()) for layer, row in zip(layers, stacked)},
        best_unit=stacked[best_index, columns],
        best_layer=np.asarray(layers)[best_index],
        best_neuron=neurons[best_index, columns],
        covered_layers=(stacked > threshold).sum(axis=0),
    )


def token_row(coverage: Coverage, vocab: Vocabulary, token_id: int) -> dict:
    """One token's coverage as a flat record."""
    unit = float(coverage.best_unit[token_id])
    layer = int(coverage.best_layer[token_id])
    unit_fields = record_fields(
        int(coverage.best_neuron[token_id]),
        coverage.layer_experts.get(layer),
        coverage.layer_dictionaries.get(layer),
    )
    return {
        "token_id": int(token_id),
        "token": vocab.text(int(token_id)),
        "best_unit_dot": unit,
        "vs_null_p99": unit / coverage.threshold,
        "best_layer": layer,
        **{f"best_{name}": value for name, value in unit_fields.items()},  # best_expert where one
        "covered_layers": int(coverage.covered_layers[token_id]),
    }


def coverage_document(coverage: Coverage, vocab: Vocabulary, show: int) -> dict:
    """Per-layer and overall shares, and the ``show`` best- and least-covered tokens."""
    return {
        "null_p99": coverage.threshold,
        "layers": [
            {"layer": layer, "covered": coverage.covered_per_layer[layer], "share": coverage.share(layer)}
            for layer in coverage.layers
        ],
        "overall": {
            "covered": int(coverage.covered.sum()),
            "share": coverage.overall_share,
            "tokens": coverage.d_vocab,
        },
        "best": [token_row(coverage, vocab, t) for t in coverage.ranked(show, best=True)],
        "worst": [token_row(coverage, vocab, t) for t in coverage.ranked(show, best=False)],
    }
