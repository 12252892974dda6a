"""A layer's neurons when its MLP routes through experts: which expert owns which neuron.

A mixture-of-experts layer is scanned and kept as one layer whose neurons are its experts' neurons
one after the other (routed experts in index order, then the shared expert), so that every
per-layer product (the scan, the histogram, token search, coverage) pools its experts the same
way: over all of the layer's neurons. ``LayerExperts`` maps the layer's flat neuron index to the
unit a user names, ``(expert, neuron within the expert)``, and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import UserError

SHARED = "shared"
ExpertLabel = int | str  # a routed expert's index, or SHARED


@dataclass(frozen=True)
class ExpertGroup:
    """One expert's neurons: flat indices [start, start + size) of its layer."""

    expert: ExpertLabel
    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def label(self) -> str:
        """How the expert is named in a unit reference: E5, or S for the shared expert."""
        return "S" if self.expert == SHARED else f"E{self.expert}"


@dataclass(frozen=True)
class LayerExperts:
    """The expert groups of one layer, in flat order."""

    groups: tuple[ExpertGroup, ...]

    @classmethod
    def from_sizes(cls, sizes: list[tuple[ExpertLabel, int]]) -> LayerExperts:
        groups, start = [], 0
        for expert, size in sizes:
            groups.append(ExpertGroup(expert, start, size))
            start += size
        return cls(tuple(groups))

    @property
    def width(self) -> int:
        return self.groups[-1].stop if self.groups else 0

    @property
    def n_routed(self) -> int:
        return sum(1 for group in self.groups if group.expert != SHARED)

    def group(self, expert: ExpertLabel) -> ExpertGroup:
        for group in self.groups:
            if group.expert == expert:
                return group
        names = ", ".join(g.label for g in self.groups)
        raise UserError(f"this layer has no expert {expert}: it has {names}")

    def locate(self, flat: int) -> tuple[ExpertLabel, int]:
        """(expert, neuron within it) of the layer's flat neuron index."""
        for group in self.groups:
            if group.start <= flat < group.stop:
                return group.expert, flat - group.start
        raise IndexError(f"neuron {flat} is beyond the layer's {self.width}")

    def flat(self, expert: ExpertLabel, neuron: int) -> int:
        group = self.group(expert)
        if not 0 <= neuron < group.size:
            raise UserError(
                f"neuron {neuron} is out of range: expert {group.label} has neurons 0-{group.size - 1}"
            )
        return group.start + neuron

    def expert_column(self) -> np.ndarray:
        """Each flat neuron's expert as an object array (ints, and SHARED)."""
        column = np.empty(self.width, dtype=object)
        for group in self.groups:
            column[group.start : group.stop] = group.expert
        return column

    def local_column(self) -> np.ndarray:
        """Each flat neuron's index within its expert."""
        column = np.empty(self.width, dtype=np.int64)
        for group in self.groups:
            column[group.start : group.stop] = np.arange(group.size)
        return column

    def to_json(self) -> list[list]:
        return [[group.expert, group.size] for group in self.groups]

    @classmethod
    def from_json(cls, data: list) -> LayerExperts:
        sizes = [(expert if expert == SHARED else int(expert), int(size)) for expert, size in data]
        return cls.from_sizes(sizes)


def unit_ref(layer: int, neuron: int, experts: LayerExperts | None) -> str:
    """How a user names a layer's flat neuron: L29/N812, or L12/E5/N301 in a layer of experts."""
    if experts is None:
        return f"L{layer}/N{neuron}"
    expert, local = experts.locate(neuron)
    label = "S" if expert == SHARED else f"E{expert}"
    return f"L{layer}/{label}/N{local}"


def record_fields(neuron: int, experts: LayerExperts | None, dictionary: str | None = None) -> dict:
    """A record's unit fields: ``neuron``, and ``expert`` (int or "shared") in a layer of experts;
    ``feature`` and ``dictionary`` for a dictionary's feature (engine.data.dictionary)."""
    if dictionary is not None:
        return {"feature": int(neuron), "dictionary": dictionary}
    if experts is None:
        return {"neuron": int(neuron)}
    expert, local = experts.locate(neuron)
    return {"expert": expert, "neuron": int(local)}
