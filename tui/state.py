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
from engine.data.dictionary import DictionaryInfo
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
from engine.settings import NEURONS, ActivationSettings, Lens, Projection, ScanSettings, Units
from tui.filtering import SORT_KEYS, Condition, neuron_order
from tui.held import RESULTS_KEPT, Held, TokenTable
from tui.neuron_ref import NEURON_NAMES, UnitNames

__all__ = ["RESULTS_KEPT", "DetailReturn", "ExplorerState", "Held", "TokenTable", "sortable"]


@dataclass(frozen=True)
class DetailReturn:
    """Where Back returns from a detail opened from another unit's closest units (1-5): that
    unit's detail (``target``: its layer and id), in the list of its kind (``units``), which
    returns in turn where ``then`` says (None: to its list)."""

    units: Units
    target: tuple[int, int]
    then: DetailReturn | None = None


@dataclass
class ExplorerState:
    settings: ScanSettings  # how layers are read now; its ``units`` is the kind on screen
    info: ModelInfo | None = None  # the model's shapes and name, once read (cache or weights)
    vocab: Vocabulary | None = None  # its token strings, read with the shapes
    n_layers: int = 0  # 0 until the model's shapes are known
    layer: int | None = None  # the layer on screen (or being fetched for it)
    sort_key: str = SORT_KEYS[0]
    reverse: bool = False  # the sort key's natural order (largest first; neurons by id), or reversed
    conditions: list[Condition] = field(default_factory=list)
    null: NullBaseline | None = None  # the same for both kinds: it depends on the projection only
    pending_neuron: int | None = None  # put the cursor on this unit when its layer arrives
    pending_detail: bool = False  # and open its detail (a jump from the collection)
    # The detail about to open from another's closest units: its kind, layer and id, and where its
    # Back returns.
    pending_return: tuple[Units, tuple[int, int], DetailReturn] | None = None
    # The corpus and pass settings chosen on the command line (each kind's evidence is in its Held).
    activation: ActivationSettings = field(default_factory=ActivationSettings)
    corpus_spec: str | None = None
    corpus: AnyCorpus | None = None
    against: str | None = None  # another checkpoint compared neuron by neuron (--against): its name
    probed_text: str = ""  # the text probed last (t): the detail ablates a neuron on it (x)
    expert: ExpertLabel | None = None  # in a layer of experts, the one listed (None: all of them)
    # The dictionary set the explorer was started with (--dictionary), whichever kind is shown, and
    # per layer its dictionary (known with the model); None and empty without one.
    dictionary: Units | None = None
    dictionary_infos: dict[int, DictionaryInfo] = field(default_factory=dict)
    # What is held of each kind of unit, by its set's digest (None: the neurons).
    kinds: dict[str | None, Held] = field(default_factory=dict)
    generations: int = 0  # generations handed out so far: each is unique across both kinds

    def __post_init__(self) -> None:
        if self.settings.units.is_dictionary and self.dictionary is None:
            self.dictionary = self.settings.units
        if self.settings.units.digest not in self.kinds:
            self._add_kind(self.settings.units)
        other = self.other_units()
        if other is not None and other.digest not in self.kinds:  # the all-layers view compares both
            self._add_kind(other)

    def _add_kind(self, units: Units) -> Held:
        held = self.kinds[units.digest] = Held(units, self._next_generation())
        return held

    def _next_generation(self) -> int:
        generation, self.generations = self.generations, self.generations + 1
        return generation

    # --- the kind of unit on screen -----------------------------------------------------------
    @property
    def held(self) -> Held:
        """What is held of the kind of unit on screen."""
        return self.kinds[self.settings.units.digest]

    def held_of(self, generation: int) -> Held | None:
        """The kind a worker's results belong to (None: results of an older projection or lens)."""
        return next((held for held in self.kinds.values() if held.generation == generation), None)

    @property
    def features(self) -> bool:
        """Whether the list shows a dictionary's features (else the model's neurons)."""
        return self.settings.units.is_dictionary

    @property
    def unit_word(self) -> str:
        return "features" if self.features else "neurons"

    def unit_layers(self) -> list[int]:
        """The layers that have units of the kind on screen: every layer for the neurons."""
        return sorted(self.dictionary_infos) if self.features else list(range(self.n_layers))

    def nearest_unit_layer(self, layer: int) -> int:
        """``layer`` when it has units of the kind on screen, else the nearest one that has (the
        lower on a tie)."""
        layers = self.unit_layers()
        if not layers or layer in layers:
            return layer
        return min(layers, key=lambda candidate: (abs(candidate - layer), candidate))

    def other_units(self) -> Units | None:
        """The kind a switch shows: the dictionary's features from the neurons, and back; None
        without a dictionary."""
        if self.dictionary is None:
            return None
        return NEURONS if self.features else self.dictionary

    def switch_units(self, units: Units) -> bool:
        """Show ``units`` (the neurons, or the dictionary's features) from now on; what is held of
        each kind stays. False: no change."""
        if units == self.settings.units:
            return False
        self.settings = replace(self.settings, units=units)
        if units.digest not in self.kinds:
            self._add_kind(units)
        return True

    @property
    def names(self) -> UnitNames:
        """How the kind on screen is named: L29/N1135, or a feature as L29/F812 (layers.29)."""
        if not self.features:
            return NEURON_NAMES
        return UnitNames({layer: info.name for layer, info in self.dictionary_infos.items()})

    def unit_label(self, layer: int, unit: int) -> str:
        return self.names.full(layer, unit)

    @property
    def generation(self) -> int:
        return self.held.generation

    @property
    def scan_complete(self) -> bool:
        return self.held.scan_complete

    @scan_complete.setter
    def scan_complete(self, value: bool) -> None:
        self.held.scan_complete = value

    @property
    def results(self) -> OrderedDict[int, LayerResult]:
        return self.held.results

    @property
    def summaries(self) -> dict[int, LayerSummary]:
        return self.held.summaries

    @property
    def token_tables(self) -> dict[int, TokenTable]:
        return self.held.token_tables

    @property
    def unit_best(self) -> dict[int, TokenTable]:
        return self.held.unit_best

    @property
    def evidence(self) -> OrderedDict[int, LayerActivations]:
        return self.held.evidence

    @property
    def readings(self) -> dict[int, EvidenceReading]:
        return self.held.readings

    @property
    def evidence_missing(self) -> set[int]:
        return self.held.evidence_missing

    @property
    def diffs(self) -> OrderedDict[int, tuple[LayerDiff, LayerResult]]:
        return self.held.diffs

    @property
    def collection(self) -> Collection | None:
        """The marked units of the kind on screen (their own file for a dictionary's features)."""
        return self.held.collection

    @collection.setter
    def collection(self, collection: Collection | None) -> None:
        self.held.collection = collection

    # --- layers -----------------------------------------------------------------------------
    def start_layer(self, asked: int | None) -> tuple[int, str | None]:
        """The first layer to show (the last by default; for a dictionary's features the nearest
        that has one) and a warning when ``asked`` is out of range or has no dictionary."""
        last = self.n_layers - 1
        wanted = last if asked is None else min(max(asked, 0), last)
        warning = None
        if asked is not None and wanted != asked:
            warning = f"layer {asked} is out of range: this model has layers 0-{last}"
        layer = self.nearest_unit_layer(wanted)
        if layer != wanted:
            warning = f"{no_dictionary(wanted, self.unit_layers())}: showing layer {layer}"
        return layer, warning

    def step(self, delta: int) -> int | None:
        """The layer ``delta`` away from the one on screen among those with units of the kind on
        screen, or None when that is no move."""
        layers = self.unit_layers()
        if not layers or self.layer is None:
            return None
        if self.layer in layers:
            index = layers.index(self.layer) + delta
        else:  # between a dictionary's layers: the first one on the way
            index = sum(1 for layer in layers if layer < self.layer) + delta - (1 if delta > 0 else 0)
        target = layers[min(max(index, 0), len(layers) - 1)]
        return None if target == self.layer else target

    def show(self, layer: int) -> LayerResult | None:
        """Put ``layer`` on screen; its result when it is held in memory."""
        self.layer = layer
        if layer in self.results:
            self.results.move_to_end(layer)
            return self.results[layer]
        return None

    def keep(self, result: LayerResult) -> None:
        self.held.keep(result)

    # --- derived views ----------------------------------------------------------------------
    def neurons(self, result: LayerResult) -> LayerNeurons:
        evidence = self.evidence.get(result.layer)
        held = self.diffs.get(result.layer)
        diff = held[0] if held is not None else None
        return LayerNeurons.derive(result, self.null, self.settings.projection.cosine, evidence, diff=diff)

    def keep_diff(self, diff: LayerDiff, other: LayerResult) -> None:
        self.held.keep_diff(diff, other)

    def keep_evidence(
        self, layer: int, evidence: LayerActivations | None, reading: EvidenceReading | None = None
    ) -> bool:
        """Hold a layer's evidence unless what is held has read more; False: not kept."""
        return self.held.keep_evidence(layer, evidence, reading)

    def switch_corpus(self, spec: str, corpus: AnyCorpus | None) -> None:
        """Read ``spec`` (as --corpus takes it) from now on: evidence of the old corpus is dropped."""
        self.corpus_spec, self.corpus = spec, corpus
        for held in self.kinds.values():
            held.forget_evidence()

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
        title = "feature" if column.name == "neuron" and self.features else column.title
        return f"{title} {'↑' if ascending else '↓'}"

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

    def take_return(self, layer: int, unit: int) -> DetailReturn | None:
        """Where the detail of ``(layer, unit)`` of the kind listed, opening now, returns: another
        unit's detail where it was opened from that one's closest units, else None (its list)."""
        pending, self.pending_return = self.pending_return, None
        if pending is None or pending[:2] != (self.settings.units, (layer, unit)):
            return None
        return pending[2]

    def jump_to(self, neuron: int | None) -> None:
        """The next result shown puts the cursor on ``neuron`` (the filter stays if it passes)."""
        self.pending_neuron = neuron

    def switch_projection(self, projection: Projection, lens: Lens | None = None) -> bool:
        """Change the projection (and the lens); everything computed under the old ones, of either
        kind of unit, is dropped. False: no change."""
        lens = self.settings.lens if lens is None else lens
        if projection == self.settings.projection and lens == self.settings.lens:
            return False
        self.settings = replace(self.settings, projection=projection, lens=lens)
        self.held.restart(self._next_generation())  # the kind on screen first
        for held in self.kinds.values():
            if held is not self.held:
                held.restart(self._next_generation())
        self.null = None
        return True


def no_dictionary(layer: int, layers: list[int]) -> str:
    """Why ``layer`` shows no features, in words."""
    have = ", ".join(map(str, layers))
    return f"layer {layer} has no dictionary (the dictionaries read layer{'s' * (len(layers) > 1)} {have})"


def sortable(key: str, neurons: LayerNeurons) -> bool:
    """Whether the column ``key`` has values for this layer (a column without any sorts nothing)."""
    return COLUMNS[key].values(neurons) is not None
