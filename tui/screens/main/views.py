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
from engine.data.neurons import LayerNeurons
from engine.data.progress import AttributionListener
from engine.data.summary import LayerSummary
from engine.data.token_index import TokenIndex
from engine.neuron_engine import NeuronEngine
from tui.corpus_pass import corpus_hash
from tui.screens.main.status import reading_label
from tui.state import ExplorerState

if TYPE_CHECKING:
    from tui.screens.all_layers import AllLayersScreen
    from tui.screens.collection import CollectionScreen
    from tui.screens.coverage import CoverageScreen
    from tui.screens.detail import NeuronDetailScreen
    from tui.screens.detail_pass import LayerPass
    from tui.screens.text_probe import TextProbeScreen
    from tui.screens.token_search import TokenSearchScreen
    from tui.screens.why_token import Attribute

WHY_TOP = 10  # neurons listed each way by "why this token"


def all_layers(state: ExplorerState, summary_added: Signal[LayerSummary]) -> AllLayersScreen | None:
    from tui.screens.all_layers import AllLayersScreen

    if state.info is None:
        return None
    label = reading_label(state.settings)
    layers, shown = state.info.n_layers, state.layer
    return AllLayersScreen(state.info.name, label, layers, state.summaries, shown, summary_added)


def collection(
    engine: NeuronEngine, state: ExplorerState, export: Callable[[], None]
) -> CollectionScreen | None:
    from tui.screens.collection import CollectionScreen

    if state.collection is None or state.info is None or state.vocab is None:
        return None
    settings = state.settings

    def layer_neurons(layer: int) -> LayerNeurons:
        return engine.neurons(layer, settings)

    return CollectionScreen(state.info.name, state.collection, state.vocab, layer_neurons, export)


def text_probe(engine: NeuronEngine, state: ExplorerState) -> TextProbeScreen | None:
    from tui.screens.text_probe import TextProbeScreen

    if state.vocab is None or state.info is None or state.layer is None:
        return None
    settings, held, activation = state.settings, dict(state.results), state.activation
    digest, name = corpus_hash(engine, state), state.corpus_spec

    def probe(text: str, layers: list[int], top: int):
        return engine.probe(text, layers, top, settings, held, digest, name, activation)

    def probe_layer(layer: int):
        return lambda text: engine.probe_layer(text, layer)

    why = attribute(engine, state.info.n_layers)
    return TextProbeScreen(state.layer, state.info.n_layers, state.vocab, probe, probe_layer, why)


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
    return TokenSearchScreen(index, tables, state.info.n_layers)


def coverage(state: ExplorerState) -> CoverageScreen | str:
    """The coverage view, or why it cannot open yet."""
    from tui.screens.coverage import CoverageScreen

    if state.info is None or state.vocab is None:
        return "the model is still loading"
    if state.null is None or not state.unit_best:
        return "coverage needs the null baseline and at least one computed layer: still computing"
    found = coverage_from_layers(state.unit_best, state.null)
    label = reading_label(state.settings)
    return CoverageScreen(state.info.name, label, found, state.vocab, state.info.n_layers)


def detail(
    engine: NeuronEngine,
    state: ExplorerState,
    neurons: LayerNeurons,
    order: list[int],
    neuron: int,
    layer_pass: LayerPass,
    against: NeuronEngine | None,
) -> NeuronDetailScreen | None:
    """The detail of ``neuron`` in the listed ``order``; ``layer_pass`` runs its layer's pass."""
    from tui.screens.detail import NeuronDetailScreen

    if state.info is None or state.vocab is None:
        return None
    settings, layer = state.settings, neurons.layer
    if neurons.inputs is None:  # computed once, kept in the cache: a later open reads it at once
        found = engine.cached_inputs(layer, settings)
        if found is not None:
            neurons = replace(neurons, inputs=found)
    held = state.diffs.get(layer)
    other = (against.location.display_name, held[1]) if held is not None and against is not None else None
    return NeuronDetailScreen(
        state.info,
        neurons,
        order,
        neuron,
        state.vocab,
        lambda n: engine.neuron_scores(layer, n, settings),
        lambda: engine.inputs(layer, settings),
        reading=state.readings.get(layer),
        layer_pass=layer_pass,
        probe_layer=lambda text: engine.probe_layer(text, layer),
        against=other,
        ablate=lambda text, neuron, listener, cancelled: engine.ablate(
            text, layer, neuron, listener=listener, cancelled=cancelled
        ),
        probed_text=state.probed_text,
    )
