"""The views the main screen opens, built from what it knows: all layers, the collection, the text
probe, the token search, coverage and a neuron's detail. Each builder takes plain values and
returns the screen to push (or None, with the reason, when it cannot open yet); what a worker will
call is captured here, on the event loop, since workers never read the explorer's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from textual.signal import Signal

from engine.data.attribution import TextAttribution
from engine.data.coverage import coverage_from_layers
from engine.data.dictionary import UnitNeighbours
from engine.data.neurons import LayerNeurons
from engine.data.progress import AttributionListener
from engine.data.summary import LayerSummary
from engine.data.token_index import TokenIndex
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import NEURONS, ScanSettings
from tui.corpus_pass import corpus_hash
from tui.neuron_ref import NEURON_NAMES, UnitNames
from tui.screens.main.status import reading_label, units_label
from tui.state import ExplorerState

if TYPE_CHECKING:
    from tui.screens.all_layers import AllLayersScreen
    from tui.screens.collection import CollectionScreen
    from tui.screens.coverage import CoverageScreen
    from tui.screens.detail import NeuronDetailScreen
    from tui.screens.detail_pass import LayerPass
    from tui.screens.detail_units import Closest
    from tui.screens.text_probe import TextProbeScreen
    from tui.screens.token_search import TokenSearchScreen
    from tui.screens.why_token import Attribute

WHY_TOP = 10  # neurons listed each way by "why this token"


def all_layers(
    state: ExplorerState, summary_added: Signal[tuple[bool, LayerSummary]]
) -> AllLayersScreen | None:
    from tui.screens.all_layers import AllLayersScreen, SideBySide

    if state.info is None:
        return None
    label = reading_label(state.settings)
    layers, shown = state.info.n_layers, state.layer
    side = None
    if state.dictionary is not None:  # neurons and features of the dictionary's layers side by side
        neurons, features = (state.kinds[units.digest].summaries for units in (NEURONS, state.dictionary))
        side = SideBySide(dict(neurons), dict(features), set(state.dictionary_infos))
    units, short = units_label(state.settings), reading_label(state.settings, short=True)
    return AllLayersScreen(
        state.info.name,
        label,
        layers,
        state.summaries,
        shown,
        summary_added,
        units,
        side,
        projection_short=short,
    )


def collection(
    engine: NeuronEngine, state: ExplorerState, export: Callable[[], None]
) -> CollectionScreen | None:
    from tui.screens.collection import CollectionScreen

    if state.collection is None or state.info is None or state.vocab is None:
        return None
    settings = state.settings

    def layer_neurons(layer: int) -> LayerNeurons:
        return engine.neurons(layer, settings)

    return CollectionScreen(
        state.info.name, state.collection, state.vocab, layer_neurons, export, state.names
    )


def text_probe(engine: NeuronEngine, state: ExplorerState) -> TextProbeScreen | None:
    from tui.screens.text_probe import TextProbeScreen

    if state.vocab is None or state.info is None or state.layer is None:
        return None
    settings, held, activation = state.settings, dict(state.results), state.activation
    digest, name = corpus_hash(engine, state), state.corpus_spec
    units = settings.units if settings.units.is_dictionary else None

    def probe(text: str, layers: list[int], top: int):
        return engine.probe(text, layers, top, settings, held, digest, name, activation)

    def probe_layer(layer: int):
        return lambda text: engine.probe_layer(text, layer, units)

    why = attribute(engine, state.info.n_layers)
    refusal = refused(engine, settings, "why this token (attribution)")
    return TextProbeScreen(
        state.layer, state.unit_layers(), state.vocab, probe, probe_layer, why, state.names, refusal
    )


def refused(engine: NeuronEngine, settings: ScanSettings, what: str) -> str | None:
    """Why ``what`` (a view that reads neurons only) cannot open for the kind listed: the engine's
    one line, with the explorer's way to the neurons; None: it can."""
    try:
        engine.refuse_dictionary(settings, what)
    except UserError as error:
        return str(error).replace("leave out --dictionary", "press d on the main screen for the neurons")
    return None


def attribute(engine: NeuronEngine, n_layers: int) -> Attribute:
    """Every layer's attribution of a text (the last text's kept: each position asks in turn)."""
    kept: dict[str, TextAttribution] = {}

    def run(text: str, listener: AttributionListener, cancelled: Callable[[], bool]) -> TextAttribution:
        if text not in kept:
            layers = list(range(n_layers))
            found = engine.attribute(text, layers, WHY_TOP, listener=listener, cancelled=cancelled)
            kept.clear()
            kept[text] = found
        return kept[text]

    return run


def token_search(state: ExplorerState, index: TokenIndex) -> TokenSearchScreen | None:
    from tui.screens.token_search import TokenSearchScreen

    if state.info is None:
        return None
    tables = dict(sorted(state.token_tables.items()))
    return TokenSearchScreen(index, tables, len(state.unit_layers()), names=state.names)


def coverage(state: ExplorerState) -> CoverageScreen | str:
    """The coverage view, or why it cannot open yet."""
    from tui.screens.coverage import CoverageScreen

    if state.info is None or state.vocab is None:
        return "the model is still loading"
    if state.null is None or not state.unit_best:
        return "coverage needs the null baseline and at least one computed layer: still computing"
    found = coverage_from_layers(state.unit_best, state.null)
    label = reading_label(state.settings)
    layers = len(state.unit_layers())
    return CoverageScreen(state.info.name, label, found, state.vocab, layers, names=state.names)


def detail(
    engine: NeuronEngine,
    state: ExplorerState,
    neurons: LayerNeurons,
    order: list[int],
    neuron: int,
    layer_pass: LayerPass,
    against: NeuronEngine | None,
) -> NeuronDetailScreen | None:
    """The detail of ``neuron`` (or feature) in the listed ``order``; ``layer_pass`` runs its
    layer's pass."""
    from tui.screens.detail import NeuronDetailScreen
    from tui.screens.detail_units import takes_negative_values

    if state.info is None or state.vocab is None:
        return None
    settings, layer, features = state.settings, neurons.layer, state.features
    if neurons.inputs is None and not features:  # computed once, kept: a later open reads it at once
        found = engine.cached_inputs(layer, settings)
        if found is not None:
            neurons = replace(neurons, inputs=found)
    held = state.diffs.get(layer)
    other = (against.location.display_name, held[1]) if held is not None and against is not None else None
    units = settings.units if features else None
    refusal = refused(engine, settings, "ablation")
    return NeuronDetailScreen(
        state.info,
        neurons,
        order,
        neuron,
        state.vocab,
        lambda n: engine.neuron_scores(layer, n, settings),
        None if features else lambda: engine.inputs(layer, settings),  # the neurons' input side
        reading=state.readings.get(layer),
        layer_pass=layer_pass,
        probe_layer=lambda text: engine.probe_layer(text, layer, units),
        against=other,
        ablate=lambda text, neuron, listener, cancelled: engine.ablate(
            text, layer, neuron, listener=listener, cancelled=cancelled
        ),
        probed_text=state.probed_text,
        names=state.names,
        closest=closest_units(engine, state, layer),
        refusals={} if refusal is None else {"ablate": refusal},
        negative=not features or takes_negative_values(state.dictionary_infos.get(layer)),
    )


def closest_units(engine: NeuronEngine, state: ExplorerState, layer: int) -> Closest | None:
    """The other kind beside a unit of ``layer``: a feature's closest neurons, or (a dictionary
    open at this layer) a neuron's closest features; None without a dictionary there."""
    from tui.screens.detail_units import Closest

    dictionary, info = state.dictionary, state.dictionary_infos.get(layer)
    if dictionary is None or info is None:
        return None
    features = state.features

    def find() -> UnitNeighbours:
        return engine.neighbours(layer, dictionary, of_features=features)

    if features:
        return Closest(info.label, NEURON_NAMES, find)
    return Closest(None, UnitNames({at: i.name for at, i in state.dictionary_infos.items()}), find)
