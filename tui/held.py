"""What the explorer holds of one kind of unit: the model's neurons, or the features of the
dictionary set it was started with (--dictionary).

Each kind has its own layers in memory, summaries, token tables, evidence, collection and
generation: its results are cached under their own key, its marks go to their own file, and the
results of a worker that started for one kind land with that kind even after the user switched to
the other (``ExplorerState.held_of``). Nothing here imports Textual.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from engine.data.diff import LayerDiff
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.results import LayerResult
from engine.data.summary import LayerSummary
from engine.neuron_engine import Collection
from engine.settings import Units

RESULTS_KEPT = 4  # full layer results held in memory per kind; the rest stay in the cache

TokenTable = tuple[np.ndarray, np.ndarray]  # per layer: best units per token [V, N] and their dots


@dataclass
class Held:
    units: Units
    generation: int  # bumps when the projection or lens changes: older results are dropped
    scan_complete: bool = False  # every layer of this kind and the null baseline are in
    results: OrderedDict[int, LayerResult] = field(default_factory=OrderedDict)
    summaries: dict[int, LayerSummary] = field(default_factory=dict)
    token_tables: dict[int, TokenTable] = field(default_factory=dict)
    unit_best: dict[int, TokenTable] = field(default_factory=dict)  # per layer: coverage arrays
    # Activation evidence: each layer's once read from the cache or computed (a few layers in
    # memory), how much of the corpus each has read, and the layers the cache does not hold.
    evidence: OrderedDict[int, LayerActivations] = field(default_factory=OrderedDict)
    readings: dict[int, EvidenceReading] = field(default_factory=dict)
    evidence_missing: set[int] = field(default_factory=set)
    # Another checkpoint compared unit by unit (--against): per layer the diff and that model's
    # own results, a few layers in memory.
    diffs: OrderedDict[int, tuple[LayerDiff, LayerResult]] = field(default_factory=OrderedDict)
    collection: Collection | None = None  # the marked units of this kind, known once opened

    def keep(self, result: LayerResult) -> None:
        self.results[result.layer] = result
        self.results.move_to_end(result.layer)
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)

    def keep_diff(self, diff: LayerDiff, other: LayerResult) -> None:
        self.diffs[diff.layer] = (diff, other)
        self.diffs.move_to_end(diff.layer)
        while len(self.diffs) > RESULTS_KEPT:
            self.diffs.popitem(last=False)

    def keep_evidence(
        self, layer: int, evidence: LayerActivations | None, reading: EvidenceReading | None = None
    ) -> bool:
        """Hold a layer's evidence unless what is held has read more; False: not kept."""
        if evidence is None:
            if layer not in self.evidence:
                self.evidence_missing.add(layer)
            return False
        held = self.readings.get(layer)
        if layer in self.evidence and held is not None and reading is not None and held.read > reading.read:
            return False  # another pass (or another explorer's) landed more of this layer already
        self.evidence_missing.discard(layer)
        self.evidence[layer] = evidence
        if reading is not None:
            self.readings[layer] = reading
        else:
            self.readings.pop(layer, None)
        self.evidence.move_to_end(layer)
        while len(self.evidence) > RESULTS_KEPT:
            dropped, _ = self.evidence.popitem(last=False)
            self.readings.pop(dropped, None)
        return True

    def forget_evidence(self) -> None:
        """Another corpus (or another projection: the lift's target tokens come from it)."""
        self.evidence.clear()
        self.readings.clear()
        self.evidence_missing.clear()

    def restart(self, generation: int) -> None:
        """Everything computed under the old projection or lens is dropped; the marks stay."""
        self.generation, self.scan_complete = generation, False
        self.results.clear()
        self.summaries.clear()
        self.token_tables.clear()
        self.unit_best.clear()
        self.diffs.clear()
        self.forget_evidence()
