"""The explorer's main screen, built from panes: the status line, the layer view (picker,
histogram, neuron list) and the panes that draw nothing (the background scan, the marks, the
activation evidence, how numbers are read, the exports).

The screen composes them, starts the engine, binds the keys that reach beyond the layer view, and
routes what one pane says to the others: messages come up from the panes, method calls go down.
What the explorer knows lives in the app's plain ``ExplorerState``.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.screen import Screen
from textual.signal import Signal

from engine.data.summary import LayerSummary
from engine.data.token_index import TokenIndex
from engine.errors import UserError, describe
from engine.neuron_engine import NeuronEngine
from engine.settings import Units
from tui.messages import (
    Activity,
    CorpusChanged,
    EngineReady,
    EvidenceReady,
    ExplorerFailed,
    LayerMissing,
    LayerReady,
    LayerSummarised,
    MarksChanged,
    NullReady,
    ScanFinished,
    WorkFailed,
    report_failure,
)
from tui.neuron_ref import use_model
from tui.screens.main import views
from tui.screens.main.evidence import Evidence
from tui.screens.main.export import Export
from tui.screens.main.layer_view import LayerView
from tui.screens.main.marks import Marks
from tui.screens.main.reading import Reading
from tui.screens.main.scanner import BackgroundScan
from tui.screens.main.status import StatusLine
from tui.state import DetailReturn, ExplorerState, no_dictionary
from tui.widgets.footer import KeyFooter
from tui.widgets.neuron_list import NeuronList


def _import_detail_view() -> None:
    """Import the detail's module once the first frame is up, so the first Enter opens it at once."""
    import tui.screens.detail  # noqa: F401


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("m", "collection", "Collection", id="collection"),
        Binding("n", "note", "Note", id="note"),
        Binding("u", "undo", "Undo mark/note", show=False, id="undo"),
        Binding("e", "export", "Export", id="export"),
        Binding("E", "export_listed", "Export listed", id="export-listed"),
        Binding("a", "all_layers", "All layers", id="all-layers"),
        Binding("p", "projection", "Projection", id="projection"),
        Binding("slash", "token_search", "Token search", key_display="/", id="token-search"),
        Binding("c", "coverage", "Coverage", id="coverage"),
        Binding("A", "corpus_pass", "Corpus pass", id="corpus-pass"),
        Binding("t", "text_probe", "Text probe", id="text-probe"),
        Binding("d", "switch_units", "Neurons/features", id="switch-units"),
    ]

    # Shown first in the footer, which is cut at the screen's width: what a newcomer looks for.
    FOOTER_FIRST = ("help", "quit")

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
        """``against``: another checkpoint's engine, compared neuron by neuron."""
        super().__init__()
        self.engine, self.state, self.start_layer = engine, state, start_layer
        self.against = against
        self.status = StatusLine(engine, state, against)
        self.layer_view = LayerView(engine, state, against)
        self.scanner = BackgroundScan(engine, state)
        self.marks = Marks(state)
        self.evidence = Evidence(engine, state)
        self.reading = Reading(engine, state)
        self.exports = Export(engine, state, export_dir)
        self.token_index: TokenIndex | None = None  # built on the first token search
        # Each layer's summary as it lands, and whether it is of the features (else the neurons).
        self.summary_added: Signal[tuple[bool, LayerSummary]] = Signal(self, "summary-added")

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """Textual's, in the same order but for help and quit, which come first (the footer
        shows them in this order; keys are dispatched through the binding chain, not this). The
        switch between neurons and features comes next with a dictionary open, and is not shown
        without one (the key still says how to open one)."""
        bindings = super().active_bindings
        first_ids = (*self.FOOTER_FIRST, "switch-units") if self.state.dictionary else self.FOOTER_FIRST
        first = {key: b for key, b in bindings.items() if b.binding.id in first_ids}
        first = dict(sorted(first.items(), key=lambda item: first_ids.index(str(item[1].binding.id))))
        rest = {key: b for key, b in bindings.items() if key not in first and b.binding.id != "switch-units"}
        return first | rest

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.layer_view
        yield from (self.scanner, self.marks, self.evidence, self.reading, self.exports)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(NeuronList).focus()
        for warning in self.engine.warnings:  # raised before the screen existed (an unusable cache)
            self.notify(warning.removeprefix("warning: "), severity="warning", timeout=20)
        self.start_engine()

    # --- the engine -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def start_engine(self) -> None:
        """Model shapes and vocabulary: from the cache when warm, else by loading the model."""
        self.post_message(Activity("reading model", None))
        self.post_message(EngineReady(self.engine.info, self.engine.vocabulary))

    def on_engine_ready(self, message: EngineReady) -> None:
        state = self.state
        state.info, state.vocab, state.n_layers = message.info, message.vocab, message.info.n_layers
        if state.dictionary is not None:
            state.dictionary_infos = self.engine.dictionary_infos(state.dictionary)
        self._open_marks()
        use_model(message.info.layer_experts)  # how neurons are named (L12/E5/N301 among experts)
        self.layer_view.begin(message.info.n_layers, with_experts=message.info.layer_experts is not None)
        start, warning = state.start_layer(self.start_layer)
        if warning:
            self.notify(warning, severity="warning")
        self.layer_view.show_layer(start)
        # A cached first layer shows first; the background scan starts after it.
        self.scanner.start(after_first_frame=self.engine.is_cached(start, state.settings))
        self.status.update_line()

    def _open_marks(self) -> None:
        """The collection of the kind of unit on screen, once: a dictionary's features have a file
        of their own, never the neurons'."""
        if self.state.collection is not None:
            return
        units = self.state.settings.units
        try:
            self.marks.open(self.engine.collection(units if units.is_dictionary else None))
        except UserError as error:
            self.notify(f"{error}; marks will not be kept", title="collection", severity="error", timeout=15)

    def on_worker_state_changed(self, event) -> None:
        report_failure(self, event)

    def on_work_failed(self, message: WorkFailed) -> None:
        """Every worker of this screen that fails ends up here, shown and never raised."""
        text = describe(message.error)
        if message.group == "engine":
            # The model cannot be opened: nothing to explore, so the explorer ends and the command
            # line prints the reason (an unexpected error as one, with how to see its traceback).
            unexpected = None if isinstance(message.error, UserError) else message.error
            self.post_message(ExplorerFailed(text, unexpected))
            return
        if message.group == "export":
            self.notify(text, title="export failed", severity="error")
            return
        self.status.set_activity(f"error: {text}", None)
        self.notify(text, title="error", severity="error", timeout=15)
        if self.layer_view.neurons is None:
            self.layer_view.listing.clear(f"cannot show this layer: {text}")

    # --- what the panes say -----------------------------------------------------------------
    def on_layer_view_shown(self, message: LayerView.Shown) -> None:
        self.status.showing(message.neurons)
        self.evidence.want(message.neurons.layer)
        self.call_after_refresh(self.scanner.first_frame_shown)
        self.call_after_refresh(_import_detail_view)

    def on_layer_missing(self, message: LayerMissing) -> None:
        """A layer not in the cache: the background scan computes it next, unless it has passed
        it already (without a cache, its results are kept only for the layer on screen)."""
        if self.scanner.will_compute(message.layer):
            self.scanner.first_frame_shown()
        elif message.layer == self.state.layer:
            self.layer_view.compute(message.layer, self.state.settings, self.state.generation)

    def on_layer_ready(self, message: LayerReady) -> None:
        self.layer_view.landed(message)

    def on_layer_summarised(self, message: LayerSummarised) -> None:
        held = self.state.held_of(message.generation)  # either kind: the other's fills the comparison
        if held is None:
            return
        layer = message.summary.layer
        held.token_tables[layer] = message.token_table
        held.unit_best[layer] = message.unit_best
        held.summaries[layer] = message.summary
        self._publish(message.summary, held.units.is_dictionary)

    def _publish(self, summary: LayerSummary, features: bool) -> None:
        if self.layer_view.picker is not None and features == self.state.features:
            self.layer_view.picker.set_summary(summary)
        self.summary_added.publish((features, summary))  # the all-layers view fills in as layers land

    def on_null_ready(self, message: NullReady) -> None:
        if self.state.held_of(message.generation) is None:
            return
        self.state.null = message.null
        for result in self.state.results.values():  # their standout counts, now that the null is in
            self._publish(self.state.summarise(result), self.state.features)
        self.layer_view.redraw()

    def on_scan_finished(self, message: ScanFinished) -> None:
        held = self.state.held_of(message.generation)
        if held is not None:
            held.scan_complete = True

    def on_activity(self, message: Activity) -> None:
        self.status.set_activity(message.text, message.fraction)
        if self.layer_view.picker is not None:
            self.layer_view.picker.set_computing(message.layer)

    def on_evidence_ready(self, message: EvidenceReady) -> None:
        held = self.state.held_of(message.generation)  # a pass over features lands with them
        if held is None:
            return
        if held.keep_evidence(message.layer, message.evidence, message.reading):
            if held is self.state.held and self.state.layer == message.layer:
                self.layer_view.redraw()

    def on_corpus_changed(self, message: CorpusChanged) -> None:
        self.layer_view.redraw()  # without the old corpus's lift

    def on_marks_changed(self, message: MarksChanged) -> None:
        message.stop()
        self.layer_view.refresh_marks()
        self.status.update_line()

    def on_neuron_list_mark_toggled(self, message: NeuronList.MarkToggled) -> None:
        self.marks.toggle(message.layer, message.neuron)  # the layer it was pressed in

    def on_neuron_list_selected(self, message: NeuronList.Selected) -> None:
        neurons = self.layer_view.neurons
        if message.neuron is None or neurons is None:
            # Enter typed ahead of a layer on its way (after a go-to): its detail opens as it lands.
            self.state.pending_detail = self.state.pending_neuron is not None
            return
        plan, engine, landed = self.evidence.layer_pass_plan(neurons.layer), self.engine, self.evidence.landed

        def layer_pass(listener, cancelled, on_landed):
            from tui.corpus_pass import run_planned_pass

            def both(layer, evidence, reading):
                on_landed(layer, evidence, reading)
                landed(layer, evidence, reading)  # the list's lift too

            return run_planned_pass(engine, plan, listener, cancelled, both)

        order = self.layer_view.listing.listed_neurons
        neuron = message.neuron
        screen = views.detail(engine, self.state, neurons, order, neuron, layer_pass, self.against)
        if screen is None:
            return
        units, back = self.state.settings.units, self.state.take_return(neurons.layer, neuron)

        def closed(target: tuple[int, int] | None) -> None:
            shown = DetailReturn(units, (screen.result.layer, screen.neuron), back)
            self._detail_closed(shown, target)

        self.app.push_screen(screen, closed)

    def _detail_closed(self, shown: DetailReturn, target: tuple[int, int] | None) -> None:
        """A detail closed on ``shown`` (its unit, and where it returns). ``target``: one of that
        unit's closest units of the other kind, chosen: switch, open it, its Back returning here.
        Back (None) from a detail opened that way: to the detail it was opened from."""
        other = self.state.other_units()
        if target is not None and other is not None:
            self.state.pending_return = (other, target, shown)
            self.switch_units(other, target, detail=True)
        elif target is None and shown.then is not None:
            back = shown.then
            self.state.pending_return = (back.units, back.target, back.then) if back.then else None
            self.switch_units(back.units, back.target, detail=True)

    def on_reading_chosen(self, message: Reading.Chosen) -> None:
        """Another projection or lens: every layer is read from the cache or computed again."""
        if self.state.info is None or not self.state.switch_projection(message.projection, message.lens):
            return
        self.layer_view.neurons = None
        if self.layer_view.picker is not None:
            self.layer_view.picker.clear_summaries()
        if self.state.layer is not None:
            self.layer_view.show_layer(self.state.layer)
        self.scanner.start()
        self.status.update_line()

    # --- what the app asks ------------------------------------------------------------------
    def step_layer(self, delta: int) -> None:
        self.layer_view.step(delta)

    def follow_neuron(self, neuron: int) -> None:
        self.layer_view.follow(neuron)

    def jump_to(self, target: tuple[int, int] | None) -> None:
        self.layer_view.jump_to(target)

    def open_collected(self, target: tuple[int, int] | None) -> None:
        self.layer_view.jump_to(target, detail=True)

    def switch_units(self, units: Units, target: tuple[int, int] | None = None, detail: bool = False) -> None:
        """Show ``units`` (the neurons, or the dictionary's features): the same layer where it has
        them, else the nearest that has (said in a line); ``target``: ``(layer, unit)`` to put the
        cursor on instead, ``detail``: and open its detail."""
        state = self.state
        if state.info is None or not state.switch_units(units):
            if target is not None:
                self.layer_view.jump_to(target, detail=detail)
            return
        self._open_marks()
        self.layer_view.switch_units()
        if target is not None:
            self.layer_view.jump_to(target, detail=detail)
        elif state.layer is not None:
            layer = state.nearest_unit_layer(state.layer)
            if layer != state.layer:
                self.notify(f"{no_dictionary(state.layer, state.unit_layers())}: showing layer {layer}")
            self.layer_view.show_layer(layer)
        self.scanner.start()
        self.status.update_line()

    def on_layer_view_units_wanted(self, message: LayerView.UnitsWanted) -> None:
        """A go-to named a unit of the other kind: switch, and put the cursor on it."""
        units = self.state.other_units()
        if units is not None:
            self.switch_units(units, message.target, message.detail)

    # --- keys -------------------------------------------------------------------------------
    def action_switch_units(self) -> None:
        units = self.state.other_units()
        if units is None:
            self.notify(
                "no dictionary is open: start the explorer with --dictionary PATH to browse its features",
                severity="warning",
            )
            return
        self.switch_units(units)

    def action_note(self) -> None:
        target = self.layer_view.highlighted()
        if target is not None:
            self.marks.note(*target)

    def action_undo(self) -> None:
        self.marks.undo()

    def action_export(self) -> None:
        self.exports.collection()

    def action_export_listed(self) -> None:
        self.exports.listed(self.layer_view.neurons, self.layer_view.listing.listed_neurons)

    def action_corpus_pass(self) -> None:
        if self.state.n_layers and self.state.layer is not None:
            self.evidence.ask_pass(self.state.layer)

    def action_projection(self) -> None:
        if self.state.info is not None:
            self.reading.ask()

    def action_all_layers(self) -> None:
        screen = views.all_layers(self.state, self.summary_added)
        if screen is not None:
            self.app.push_screen(screen, self._jump_to_layer)

    def _jump_to_layer(self, layer: int | None) -> None:
        if layer is None:
            return
        if layer not in self.state.unit_layers():
            self.notify(
                f"{no_dictionary(layer, self.state.unit_layers())}: d lists the neurons", title="layer"
            )
            return
        self.layer_view.show_layer(layer)

    def action_collection(self) -> None:
        screen = views.collection(self.engine, self.state, self.exports.collection)
        if screen is not None:
            self.app.push_screen(screen, self.open_collected)

    def action_text_probe(self) -> None:
        screen = views.text_probe(self.engine, self.state)
        if screen is None:
            return

        def closed(target: tuple[int, int] | None) -> None:
            if screen.text:
                self.state.probed_text = screen.text  # the detail ablates a neuron on it (x)
            self.call_after_refresh(self.open_collected, target)

        self.app.push_screen(screen, closed)

    def action_token_search(self) -> None:
        if self.state.vocab is None:
            return
        if self.token_index is None:
            self.token_index = TokenIndex(self.state.vocab)
        screen = views.token_search(self.state, self.token_index)
        if screen is not None:
            self.app.push_screen(screen, self.jump_to)

    def action_coverage(self) -> None:
        screen = views.coverage(self.state)
        if isinstance(screen, str):
            self.notify(screen, severity="warning")
        else:
            self.app.push_screen(screen, self.jump_to)
