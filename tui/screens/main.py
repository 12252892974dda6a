"""The explorer's main view: the layer picker, the layer's max-dot histogram and its neuron list.

The screen owns its layout, its keys and its workers (the parts beyond the layer on screen and the
background scan are mixins, one module each). Slow work (model shapes, cached layers, the
background scan, exports) runs in thread workers that post messages back; the event loop only
draws and answers keys. What the explorer knows lives in the app's ``ExplorerState``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.signal import Signal
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.data.model import ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.progress import ScanProgress
from engine.data.results import LayerResult
from engine.data.summary import LayerSummary, summarise
from engine.data.token_index import TokenIndex
from engine.data.tokens import Vocabulary
from engine.errors import ScanCancelled, UserError, describe
from engine.neuron_engine import NeuronEngine
from engine.settings import Lens
from tui.messages import (
    Activity,
    DiffReady,
    EngineReady,
    LayerReady,
    LayerSummarised,
    NullReady,
    ScanFinished,
)
from tui.neuron_ref import neuron_label
from tui.scan_plan import NULL_BASELINE, next_scan_target, should_abandon
from tui.screens.main_evidence import EvidenceWork
from tui.screens.main_export import ExportActions
from tui.screens.main_list import ListActions
from tui.screens.main_marks import MarkActions
from tui.screens.main_status import StatusLine
from tui.screens.main_views import OtherViews
from tui.state import ExplorerState
from tui.widgets.footer import KeyFooter
from tui.widgets.histogram import MaxDotHistogram
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.neuron_list import NeuronList
from tui.widgets.status_bar import StatusBar
from tui.widgets.title_bar import TitleBar

if TYPE_CHECKING:
    from tui.app import NeuronApp

PROGRESS_INTERVAL = 0.1  # seconds between progress messages from the scanner
COLLECTION_POLL = 1.0  # seconds between looks at the collection file (another explorer's changes)


def _import_detail_view() -> None:
    """Import the detail's module once the first frame is up, so the first Enter opens it at once."""
    import tui.screens.detail  # noqa: F401


class MainScreen(StatusLine, MarkActions, ListActions, EvidenceWork, OtherViews, ExportActions, Screen[None]):
    """Layout, keys, the layer on screen and the background scan; the rest in main_*.py."""

    BINDINGS = [
        # The app's layer keys, repeated here so that the footer shows them first.
        Binding("right_square_bracket", "app.next_layer", "Next layer", key_display="]"),
        Binding("left_square_bracket", "app.previous_layer", "Prev layer", key_display="["),
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("r", "reverse_sort", "Reverse", id="reverse"),
        Binding("f", "filter", "Filter", id="filter"),
        Binding("g", "go_to", "Go to", id="go-to"),
        Binding("m", "collection", "Collection", id="collection"),
        Binding("n", "note", "Note", id="note"),
        Binding("u", "undo", "Undo mark/note", show=False, id="undo"),
        Binding("e", "export", "Export", id="export"),
        Binding("E", "export_listed", "Export listed", id="export-listed"),
        Binding("h", "toggle_histogram", "Hist/curve", id="histogram"),
        Binding("H", "grow_histogram", "Taller histogram", show=False, id="grow-histogram"),
        Binding("a", "all_layers", "All layers", id="all-layers"),
        Binding("p", "projection", "Projection", id="projection"),
        Binding("slash", "token_search", "Token search", key_display="/", id="token-search"),
        Binding("c", "coverage", "Coverage", id="coverage"),
        Binding("A", "corpus_pass", "Corpus pass", id="corpus-pass"),
        Binding("t", "text_probe", "Text probe", id="text-probe"),
    ]

    # Classes set on the screen as it is resized (Textual applies them before the next layout).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(
        self,
        engine: NeuronEngine,
        state: ExplorerState,
        start_layer: int | None,
        export_dir: Path,
        against: NeuronEngine | None = None,
    ) -> None:
        super().__init__()
        self.engine, self.state = engine, state
        self.against = against  # another checkpoint's engine: the diff column and its tokens
        self.start_layer, self.export_dir = start_layer, export_dir
        self.info: ModelInfo | None = None
        self.vocab: Vocabulary | None = None
        self.neurons: LayerNeurons | None = None  # the layer on screen, derived for display
        self.activity = "starting"
        self.scanner_waits_for_first_frame = False
        self.token_index: TokenIndex | None = None  # built on the first token search
        self.jacobian_lens: Lens | None = None  # a Jacobian lens switched away from, offered again
        self.summary_added: Signal[LayerSummary] = Signal(self, "summary-added")

    @property
    def result(self) -> LayerResult | None:
        return self.neurons.result if self.neurons is not None else None

    # --- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TitleBar("Layers", id="left-title")
                yield Static("loading model…", id="loading-note")
            with Vertical(id="right"):
                yield MaxDotHistogram(id="histogram")
                yield NeuronList(id="neurons")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(NeuronList).focus()
        self.refresh_status()
        for warning in self.engine.warnings:  # raised before the screen existed (an unusable cache)
            self.notify(warning.removeprefix("warning: "), severity="warning", timeout=20)
        self.set_interval(COLLECTION_POLL, self._follow_collection_file)
        self.start_engine()

    # --- status -----------------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker of this screen that fails ends up here, shown and never raised."""
        if event.state != WorkerState.ERROR or event.worker.error is None:
            return
        text = describe(event.worker.error)
        if event.worker.group == "engine":
            # The model cannot be opened: nothing to explore, so the explorer ends and the command
            # line prints the reason (an unexpected error as one, with how to see its traceback).
            error = event.worker.error
            cast("NeuronApp", self.app).fail(text, None if isinstance(error, UserError) else error)
            return
        if event.worker.group == "export":
            self.notify(text, title="export failed", severity="error")
            return
        self.activity = f"error: {text}"
        self.query_one(StatusBar).progress(None)
        self.notify(text, title="error", severity="error", timeout=15)
        if self.neurons is None:
            self.query_one(NeuronList).clear(f"cannot show this layer: {text}")
        self.refresh_status()

    # --- workers ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def start_engine(self) -> None:
        """Model shapes and vocabulary: from the cache when warm, else by loading the model."""
        self.post_message(Activity("reading model", None))
        self.post_message(EngineReady(self.engine.info, self.engine.vocabulary))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.info, self.vocab = message.info, message.vocab
        self.state.n_layers = message.info.n_layers
        try:
            self.state.collection = self.engine.collection()
            if self.state.collection.warning:
                self.notify(self.state.collection.warning, severity="warning", timeout=15)
        except UserError as error:
            self.notify(f"{error}; marks will not be kept", title="collection", severity="error", timeout=15)
        self.query_one("#loading-note").remove()
        self.query_one("#left", Vertical).mount(LayerPicker(message.info.n_layers, id="picker"))
        start, warning = self.state.start_layer(self.start_layer)
        if warning:
            self.notify(warning, severity="warning")
        self.show_layer(start)
        if self.engine.is_cached(start, self.state.settings):
            self.scanner_waits_for_first_frame = True  # the first frame comes first; then the background
        else:
            self.run_scanner()

    @work(thread=True, exclusive=True, group="fetch", exit_on_error=False)
    def fetch_cached(self, layer: int, generation: int) -> None:
        """A cached layer off the disk without waiting for the scanner."""
        result = self.engine.cached_layer(layer, self.state.settings)
        if result is not None:
            self.post_message(LayerReady(result, generation))
        else:
            self.app.call_from_thread(self._release_scanner)  # not cached after all: the scanner computes it

    @work(thread=True, exclusive=True, group="scanner", exit_on_error=False)
    def run_scanner(self) -> None:
        """Compute layers one at a time in the order ``next_scan_target`` gives. A scan of a layer
        the user left is abandoned for the new one."""
        worker = get_current_worker()
        state = self.state
        generation, settings, n_layers = state.generation, state.settings, state.n_layers
        done: set[int] = set()
        null = None
        last_post = 0.0

        def listener(event: ScanProgress) -> None:
            nonlocal last_post
            now = time.monotonic()
            if event.stage == "loading":
                self.post_message(Activity("loading model weights", None))
            elif event.stage == "scanning" and (now - last_post > PROGRESS_INTERVAL or event.done == 0):
                last_post = now
                fraction = event.done / event.total if event.total else 0.0
                self.post_message(
                    Activity(f"computing layer {event.layer} ({fraction:.0%})", fraction, event.layer)
                )

        while not worker.is_cancelled:
            target = next_scan_target(n_layers, state.layer, done, null is not None)
            if target is None:
                break
            if target == NULL_BASELINE:
                cached = self.engine.has_null_baseline(settings)
                verb = "reading" if cached else "computing"
                self.post_message(Activity(f"{verb} the null baseline", None))
                null = self.engine.null_baseline(settings)
                self.post_message(NullReady(null, generation))
                continue

            def abandon(layer: int = target) -> bool:
                return worker.is_cancelled or should_abandon(layer, state.layer, done)

            try:
                result = self.engine.layer(target, settings, listener=listener, cancelled=abandon)
            except ScanCancelled:
                continue
            done.add(target)
            if target == state.layer:
                self.post_message(LayerReady(result, generation))
            n = settings.token_top_n
            self.post_message(
                LayerSummarised(
                    summarise(LayerNeurons.derive(result, null, settings.projection.cosine)),
                    generation,
                    token_table=(result.token_neurons[:, :n].copy(), result.token_dots[:, :n].copy()),
                    unit_best=(result.token_unit_best, result.token_unit_best_neuron),
                )
            )
        if not worker.is_cancelled:
            self.post_message(Activity(f"all {n_layers} layers computed", None))
            self.post_message(ScanFinished(generation))

    def on_scan_finished(self, message: ScanFinished) -> None:
        if message.generation == self.state.generation:
            self.state.scan_complete = True

    # --- layers -----------------------------------------------------------------------------
    def show_layer(self, layer: int) -> None:
        result = self.state.show(layer)
        if self.query(LayerPicker):
            self.query_one(LayerPicker).set_current(layer)
        if result is not None:
            self._show_result(result)
        else:
            self.neurons = None
            self.query_one(NeuronList).to_top()
            self.query_one(NeuronList).clear(f"layer {layer}: reading the cache or computing…")
            self.query_one(MaxDotHistogram).show(None, f"layer {layer}: waiting for results")
            self.fetch_cached(layer, self.state.generation)
        self.refresh_status()

    def step_layer(self, delta: int) -> None:
        target = self.state.step(delta)
        if target is not None:
            self.show_layer(target)

    def on_layer_ready(self, message: LayerReady) -> None:
        if message.generation != self.state.generation:
            return
        result = message.result
        self.state.keep(result)
        if result.layer == self.state.layer and (self.result is None or self.result.layer != result.layer):
            self._show_result(result)
        if self.scanner_waits_for_first_frame:
            self.call_after_refresh(self._release_scanner)
        self.call_after_refresh(_import_detail_view)

    def _release_scanner(self) -> None:
        if self.scanner_waits_for_first_frame:
            self.scanner_waits_for_first_frame = False
            self.run_scanner()

    def on_layer_summarised(self, message: LayerSummarised) -> None:
        if message.generation != self.state.generation:
            return
        layer = message.summary.layer
        self.state.token_tables[layer] = message.token_table
        self.state.unit_best[layer] = message.unit_best
        self.state.summaries[layer] = message.summary
        self._publish_summary(message.summary)

    def _publish_summary(self, summary: LayerSummary) -> None:
        if self.query(LayerPicker):
            self.query_one(LayerPicker).set_summary(summary)
        self.summary_added.publish(summary)  # the all-layers view fills in as layers land

    # --- activation evidence -----------------------------------------------------------------
    def on_null_ready(self, message: NullReady) -> None:
        if message.generation != self.state.generation:
            return
        self.state.null = message.null
        # Layers summarised before the null existed get their standout counts now.
        for result in self.state.results.values():
            self._publish_summary(self.state.summarise(result))
        if self.result is not None:
            self._show_result(self.result)

    def _show_result(self, result: LayerResult, from_top: bool = False) -> None:
        assert self.vocab is not None
        state = self.state
        self.neurons = neurons = state.neurons(result)
        order = state.order(neurons)
        if state.pending_neuron is not None and state.conditions and state.pending_neuron not in order:
            hidden = ", ".join(map(str, state.conditions))
            state.conditions = []
            order = state.order(neurons)
            self.notify(
                f"{neuron_label(result.layer, state.pending_neuron)} does not pass the filter {hidden}: "
                "the filter was cleared to show it",
                title="go to",
            )
        listing = self.query_one(NeuronList)
        listing.show_layer(neurons, self.vocab, order, state.marked)
        if from_top:
            listing.to_top()
        if state.pending_neuron is not None:
            listing.set_order(order, keep_neuron=state.pending_neuron)
            state.pending_neuron = None
            if state.pending_detail:
                state.pending_detail = False
                self.call_after_refresh(listing.action_select)
        null_values = None
        if state.null is not None:
            # Null max-dots per unit norm, scaled by the layer's median norm to sit on the same axis.
            scale = 1.0 if state.settings.projection.cosine else float(np.median(result.norm))
            null_values = state.null.values * scale
        shown = f"{len(order)} of {result.d_mlp}" if len(order) != result.d_mlp else f"{result.d_mlp}"
        values = result.max_dot[order] if len(order) else result.max_dot
        self.query_one(MaxDotHistogram).show(
            values, f"layer {result.layer}: max-dot of {shown} neurons", null_values
        )
        self._mark_histogram(listing.current_neuron)
        self.refresh_status()
        self.call_after_refresh(self._want_evidence, result.layer)
        if self.against is not None and result.layer not in state.diffs:
            self.fetch_diff(result.layer, state.generation)

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def fetch_diff(self, layer: int, generation: int) -> None:
        """The layer against the other checkpoint: from the cache, or both scans (each model's
        cache first) and both weights."""
        assert self.against is not None
        settings = self.state.settings
        try:
            lens_file = self.engine.lens_file(settings.lens)
            if lens_file is not None:  # the other model is read through the same lens
                self.against.open_lens(f"jacobian:{lens_file.path}")
            diff = self.engine.diff(layer, self.against, settings)
            other = self.against.layer(layer, settings)
        except UserError as error:
            self.app.call_from_thread(self.notify, f"diff: {error}", severity="error")
            return
        self.post_message(DiffReady(diff, other, generation))

    def on_diff_ready(self, message: DiffReady) -> None:
        if message.generation != self.state.generation:
            return
        self.state.keep_diff(message.diff, message.other)
        if self.result is not None and self.result.layer == message.diff.layer:
            self._show_result(self.result)

    def _mark_histogram(self, neuron: int | None) -> None:
        if self.result is not None and neuron is not None:
            self.query_one(MaxDotHistogram).set_marker(float(self.result.max_dot[neuron]))

    def on_neuron_list_highlighted(self, message: NeuronList.Highlighted) -> None:
        self._mark_histogram(message.neuron)

    def on_layer_picker_chosen(self, message: LayerPicker.Chosen) -> None:
        self.show_layer(message.layer)
        self.query_one(NeuronList).focus()

    def on_neuron_list_selected(self, message: NeuronList.Selected) -> None:
        from tui.screens.detail import NeuronDetailScreen

        if self.neurons is None or self.info is None or self.vocab is None:
            return
        neurons, settings = self.neurons, self.state.settings

        def score_row(neuron: int) -> np.ndarray:
            return self.engine.neuron_scores(neurons.layer, neuron, settings)

        def layer_inputs():
            return self.engine.inputs(neurons.layer, settings)

        listing = self.query_one(NeuronList)
        order = listing.listed_neurons
        if neurons.inputs is None:  # computed once, kept in the cache: a later open reads it at once
            found = self.engine.cached_inputs(neurons.layer, settings)
            if found is not None:
                neurons = replace(neurons, inputs=found)
        plan, engine, landed_here = self.layer_pass_plan(neurons.layer), self.engine, self.evidence_landed

        def layer_pass(listener, cancelled, on_landed):
            from tui.corpus_pass import run_planned_pass

            def landed(layer, evidence, reading):
                on_landed(layer, evidence, reading)
                landed_here(layer, evidence, reading)  # the list's lift too

            return run_planned_pass(engine, plan, listener, cancelled, landed)

        def probe_layer(text: str):
            return engine.probe_layer(text, neurons.layer)

        screen = NeuronDetailScreen(
            self.info,
            neurons,
            order,
            message.neuron,
            self.vocab,
            score_row,
            layer_inputs,
            reading=self.state.readings.get(neurons.layer),
            layer_pass=layer_pass,
            probe_layer=probe_layer,
            against=self._against_result(neurons.layer),
        )
        self.app.push_screen(screen)

    def _against_result(self, layer: int):
        """The other checkpoint's name and results of ``layer``, when they are held."""
        held = self.state.diffs.get(layer)
        if held is None or self.against is None:
            return None
        return self.against.location.display_name, held[1]

    def follow_neuron(self, neuron: int) -> None:
        """The detail stepped to another neuron: the list's cursor follows."""
        listing = self.query_one(NeuronList)
        listing.set_order(listing.order, keep_neuron=neuron)

    def jump_to_neuron(self, target: tuple[int, int] | None) -> None:
        """Open ``(layer, neuron)`` with the cursor on that neuron (neuron -1: just the layer)."""
        if target is None:
            return
        layer, neuron = target
        self.state.jump_to(neuron if neuron >= 0 else None)
        self.show_layer(layer)
