"""A dictionary's features as units: what a user, a record and the explorer know of a dictionary
(sparse autoencoder, transcoder, cross-layer transcoder) without its weights.

A feature is ``(layer, feature)``: the layer is the one whose activations the dictionary's encoder
reads (``blocks.L.…``), the feature its row of the decoder. Its "W_out row" is its decoder row:
the direction it writes into the residual stream, read against the vocabulary exactly as a
neuron's. A cross-layer transcoder's feature writes to several layers; the logit lens on weights
reads the final residual stream, where those writes add up, so its direction is their sum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engine.errors import UserError

FORMATS = ("saelens", "sparsify", "circuit-tracer", "gemma-scope")


@dataclass(frozen=True)
class DictionaryInfo:
    """One dictionary of an opened set: the features of one layer."""

    name: str  # how records and the explorer name it: its folder or file name
    layer: int  # the layer whose activations its encoder reads
    format: str  # one of FORMATS: which library wrote it
    kind: str  # sae, transcoder, skip-transcoder or clt (cross-layer transcoder)
    architecture: str  # relu, topk, jumprelu, gated, groupmax
    hook_in: str  # the TransformerLens hook its encoder reads
    hook_out: str  # the hook its decoder reconstructs (the same as hook_in for an SAE)
    d_in: int
    d_sae: int
    writes_to: tuple[int, ...]  # the layers its decoder writes to (several for a CLT)

    @property
    def label(self) -> str:
        """One line: what it is and where it reads and writes."""
        target = "" if self.hook_out == self.hook_in else f" -> {self.hook_out}"
        what = f"{self.kind} ({self.architecture}, {self.d_sae} features)"
        return f"{self.name}: {what} at {self.hook_in}{target}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["writes_to"] = list(self.writes_to)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DictionaryInfo:
        values = {key: data[key] for key in cls.__dataclass_fields__}
        values["writes_to"] = tuple(int(layer) for layer in values["writes_to"])
        return cls(**values)


def feature_ref(layer: int, feature: int, dictionary: str | None = None) -> str:
    """How a user names a feature: L29/F812, with its dictionary in brackets where given."""
    ref = f"L{layer}/F{feature}"
    return ref if dictionary is None else f"{ref} ({dictionary})"


def check_feature(feature: int, info: DictionaryInfo) -> None:
    if not 0 <= feature < info.d_sae:
        raise UserError(
            f"feature {feature} is out of range: {info.name} at layer {info.layer} has features "
            f"0-{info.d_sae - 1}"
        )


@dataclass(frozen=True)
class UnitNeighbours:
    """For each unit of one kind (a layer's features, or its neurons), the ``top`` units of the
    other kind whose write directions are closest: by |cosine|, the sign kept (a neuron's
    activation can be negative, so an opposite direction is as close)."""

    layer: int
    ids: np.ndarray  # [units, top] int64
    cosines: np.ndarray  # [units, top] float64, signed

    def of(self, unit: int) -> list[tuple[int, float]]:
        return [(int(i), float(c)) for i, c in zip(self.ids[unit], self.cosines[unit])]
