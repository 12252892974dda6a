"""What the explorer knows and what the user chose, without Textual: a unit test can build one.

The layer on screen, the layer results kept in memory, per-layer summaries and token tables, the
null baseline, the marks, the sort key and the filter. The screen draws from it; workers never
touch it (their results arrive as messages and the screen stores them here).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from engine.columns import COLUMNS
from engine.data.diff import LayerDiff
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.experts import ExpertGroup, ExpertLabel
from engine.data.model import ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.null import NullBaseline
from engine.data.results import LayerResult
from engine.data.summary import LayerSummary, summarise
from engine.data.tokens import Vocabulary
from engine.neuron_engine import AnyCorpus, Collection
from engine.settings import ActivationSettings, Lens, Projection, ScanSettings
from tui.filtering import SORT_KEYS, Condition, neuron_order

RESULTS_KEPT = 4  # full layer results held in memory; the rest stay in the cache

TokenTable = tuple[np.ndarray, np.ndarray]  # per layer: best neurons per token [V, N] and their dots


@dataclass
class ExplorerState:
    settings: ScanSettings
    info: ModelInfo | None = None  # the model's shapes and name, once read (cache or weights)
    vocab: Vocabulary | None = None  # its token strings, read with the shapes
    n_layers: int = 0  # 0 until the model's shapes are known
    layer: int | None = None  # the layer on screen (or being fetched for it)
    sort_key: str = SORT_KEYS[0]
    reverse: bool = False  # the sort key's natural order (largest first; neurons by id), or reversed
    conditions: list[Condition] = field(default_factory=list)
    collection: Collection | None = None  # the model's marked neurons, known once the model is
    generation: int = 0  # bumps when the settings change: results of older settings are dropped
    scan_complete: bool = False  # every layer and the null baseline of this generation are in
    null: NullBaseline | None = None
    results: OrderedDict[int, LayerResult] = field(default_factory=OrderedDict)
    summaries: dict[int, LayerSummary] = field(default_factory=dict)
    token_tables: dict[int, TokenTable] = field(default_factory=dict)
    unit_best: dict[int, TokenTable] = field(default_factory=dict)  # per layer: coverage arrays
    pending_neuron: int | None = None  # put the cursor on this neuron when its layer arrives
    pending_detail: bool = False  # and open its detail (a jump from the collection)
    # Activation evidence: the corpus and pass settings chosen on the command line, each layer's
    # evidence once read from the cache or computed (a few layers in memory), and the layers whose
    # evidence the cache does not hold.
    activation: ActivationSettings = field(default_factory=ActivationSettings)
    corpus_spec: str | None = None
    corpus: AnyCorpus | None = None
    evidence: OrderedDict[int, LayerActivations] = field(default_factory=OrderedDict)
    readings: dict[int, EvidenceReading] = field(default_factory=dict)  # how much each has read
    evidence_missing: set[int] = field(default_factory=set)
    # Another checkpoint compared neuron by neuron (--against): its name, and per layer the diff
    # and that model's own results (its tokens in the detail), a few layers in memory.
    against: str | None = None
    diffs: OrderedDict[int, tuple[LayerDiff, LayerResult]] = field(default_factory=OrderedDict)
    probed_text: str = ""  # the text probed last (t): the detail ablates a neuron on it (x)
    expert: ExpertLabel | None = None  # in a layer of experts, the one listed (None: all of them)

    # --- layers -----------------------------------------------------------------------------
    def start_layer(self, asked: int | None) -> tuple[int, str | None]:
        """The first layer to show (the last by default) and a warning when ``asked`` is out of range."""
        last = self.n_layers - 1
        if asked is None:
            return last, None
        if 0 <= asked <= last:
            return asked, None
        return min(max(asked, 0), last), f"layer {asked} is out of range: this model has layers 0-{last}"

    def step(self, delta: int) -> int | None:
        """The layer ``delta`` away from the one on screen, or None when that is no move."""
        if self.n_layers == 0 or self.layer is None:
            return None
        target = min(max(self.layer + delta, 0), self.n_layers - 1)
        return None if target == self.layer else target

    def show(self, layer: int) -> LayerResult | None:
        """Put ``layer`` on screen; its result when it is held in memory."""
        self.layer = layer
        if layer in self.results:
            self.results.move_to_end(layer)
            return self.results[layer]
        return None

    def keep(self, result: LayerResult) -> None:
        self.results[result.layer] = result
        self.results.move_to_end(result.layer)
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)

    # --- derived views ----------------------------------------------------------------------
    def neurons(self, result: LayerResult) -> LayerNeurons:
        evidence = self.evidence.get(result.layer)
        held = self.diffs.get(result.layer)
        diff = held[0] if held is not None else None
        return LayerNeurons.derive(result, self.null, self.settings.projection.cosine, evidence, diff=diff)

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

    def switch_corpus(self, spec: str, corpus: AnyCorpus | None) -> None:
        """Read ``spec`` (as --corpus takes it) from now on: evidence of the old corpus is dropped."""
        self.corpus_spec, self.corpus = spec, corpus
        self.evidence.clear()
        self.readings.clear()
        self.evidence_missing.clear()

    def order(self, neurons: LayerNeurons) -> np.ndarray:
        order = neuron_order(neurons, self.sort_by(neurons), self.conditions)
        group = self.expert_group(neurons.result)
        if group is not None:  # one expert's neurons: its range of the layer's flat indices
            order = order[(order >= group.start) & (order < group.stop)]
        return order[::-1].copy() if self.reverse else order

    def expert_group(self, result: LayerResult) -> ExpertGroup | None:
        """The chosen expert's neurons in ``result``'s layer (None: all, or a dense layer)."""
        experts = result.experts
        if experts is None or self.expert is None:
            return None
        found = [g for g in experts.groups if g.expert == self.expert]
        return found[0] if found else None

    def step_expert(self, result: LayerResult, delta: int) -> bool:
        """Choose the expert ``delta`` away in ``result``'s layer ("all" comes before the first);
        False when the layer has no experts or that is no move."""
        experts = result.experts
        if experts is None:
            return False
        labels: list[ExpertLabel | None] = [None, *(g.expert for g in experts.groups)]
        current = labels.index(self.expert) if self.expert in labels else 0
        target = labels[min(max(current + delta, 0), len(labels) - 1)]
        if target == self.expert and self.expert in labels:
            return False
        self.expert = target
        return True

    def sort_by(self, neurons: LayerNeurons | None) -> str:
        """The sort key in effect: the chosen one, or max-dot while the chosen column has no values
        for this layer (lift before a corpus pass, the diff columns without another checkpoint)."""
        if neurons is None or sortable(self.sort_key, neurons):
            return self.sort_key
        return SORT_KEYS[0]

    def sort_label(self, neurons: LayerNeurons | None) -> str:
        """The sort key in effect and the direction of its values on screen: ↓ largest first, ↑
        smallest."""
        column = COLUMNS[self.sort_by(neurons)]
        ascending = (not column.descending) != self.reverse
        return f"{column.title} {'↑' if ascending else '↓'}"

    def summarise(self, result: LayerResult) -> LayerSummary:
        summary = summarise(self.neurons(result))
        self.summaries[summary.layer] = summary
        return summary

    # --- choices ----------------------------------------------------------------------------
    def cycle_sort(self, neurons: LayerNeurons | None) -> str:
        """The next sort key that has values for the layer shown (every key when none is shown)."""
        start = SORT_KEYS.index(self.sort_by(neurons))
        for step in range(1, len(SORT_KEYS) + 1):
            key = SORT_KEYS[(start + step) % len(SORT_KEYS)]
            if neurons is None or sortable(key, neurons):
                self.sort_key = key
                break
        return self.sort_key

    def reverse_sort(self) -> None:
        self.reverse = not self.reverse

    @property
    def marked(self) -> set[int]:
        """The marked neurons of the layer on screen."""
        if self.collection is None or self.layer is None:
            return set()
        return self.collection.in_layer(self.layer)

    def toggle_mark(self, layer: int, neuron: int) -> None:
        if self.collection is not None:
            self.collection.toggle(layer, neuron)

    def jump_to(self, neuron: int | None) -> None:
        """The next result shown puts the cursor on ``neuron`` (the filter stays if it passes)."""
        self.pending_neuron = neuron

    def switch_projection(self, projection: Projection, lens: Lens | None = None) -> bool:
        """Change the projection (and the lens); everything computed under the old ones is dropped.
        False: no change."""
        lens = self.settings.lens if lens is None else lens
        if projection == self.settings.projection and lens == self.settings.lens:
            return False
        self.settings = replace(self.settings, projection=projection, lens=lens)
        self.generation += 1
        self.scan_complete = False
        self.results.clear()
        self.summaries.clear()
        self.token_tables.clear()
        self.unit_best.clear()
        self.evidence.clear()  # the lift's target tokens come from the projection and the lens
        self.diffs.clear()
        self.readings.clear()
        self.evidence_missing.clear()
        self.null = None
        return True


def sortable(key: str, neurons: LayerNeurons) -> bool:
    """Whether the column ``key`` has values for this layer (a column without any sorts nothing)."""
    return COLUMNS[key].values(neurons) is not None
