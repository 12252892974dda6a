"""The explorer's main view: the layer picker, the layer's max-dot histogram and its neuron list.

The screen owns its layout, its keys and its workers. Slow work (model shapes, cached layers, the
background scan, exports) runs in thread workers that post messages back; the event loop only
draws and answers keys. What the explorer knows lives in the app's ``ExplorerState``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.signal import Signal
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import ScanCancelled, UserError, describe
from engine.neuron_engine import NeuronEngine
from engine.neurons import LayerNeurons
from engine.progress import ActivationProgress, ScanProgress
from engine.results import LayerResult
from engine.settings import Projection, ScanSettings
from engine.store.collection import Collection, collection_records
from engine.store.export import export_settings, neuron_records, write_records
from engine.summary import LayerSummary, summarise
from tui.filtering import FilterError, parse_filter
from tui.messages import Activity, EngineReady, EvidenceReady, LayerReady, LayerSummarised, NullReady
from tui.neuron_ref import NeuronRefError, neuron_label, parse_neuron_ref
from tui.scan_plan import NULL_BASELINE, next_scan_target, should_abandon
from tui.screens.confirm import ConfirmScreen
from tui.screens.prompt import PromptScreen
from tui.state import ExplorerState
from tui.widgets.footer import KeyFooter
from tui.widgets.histogram import MaxDotHistogram
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.neuron_list import NeuronList
from tui.widgets.status_bar import Status, StatusBar

PROGRESS_INTERVAL = 0.1  # seconds between progress messages from the scanner
COLLECTION_POLL = 1.0  # seconds between looks at the collection file (another explorer's changes)


def _import_detail_view() -> None:
    """Import the detail's module once the first frame is up, so the first Enter opens it at once."""
    import tui.screens.detail  # noqa: F401


class MainScreen(Screen[None]):
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
        self, engine: NeuronEngine, state: ExplorerState, start_layer: int | None, export_dir: Path
    ) -> None:
        super().__init__()
        self.engine, self.state = engine, state
        self.start_layer, self.export_dir = start_layer, export_dir
        self.info = None
        self.vocab = None
        self.neurons: LayerNeurons | None = None  # the layer on screen, derived for display
        self.activity = "starting"
        self.scanner_waits_for_first_frame = False
        self.token_index = None  # engine.token_search.TokenIndex, built on the first search
        self.summary_added: Signal[LayerSummary] = Signal(self, "summary-added")

    @property
    def result(self) -> LayerResult | None:
        return self.neurons.result if self.neurons is not None else None

    # --- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static("Layers", id="left-title")
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

    def _follow_collection_file(self) -> None:
        """Another explorer on the same model may have marked or noted neurons: show them."""
        collection = self.state.collection
        if collection is None:
            return
        try:
            changed = collection.refresh()
        except UserError:
            return  # said when a change is saved; a passing read error is no news
        if changed:
            self._refresh_marks()

    # --- status -----------------------------------------------------------------------------
    def refresh_status(self) -> None:
        if not self.is_mounted:
            return
        state = self.state
        status = Status(
            model=self.info.name if self.info else self.engine.location.display_name,
            device=self.engine.device_label(),
            projection=state.settings.projection.label,
            projection_short=state.settings.projection.short_label,
            layer=state.layer,
            last_layer=state.n_layers - 1 if state.n_layers else 0,
            marked=len(state.collection) if state.collection is not None else 0,
            activity=self.activity,
            sort=state.sort_label,
            filter_text="filter " + ", ".join(map(str, state.conditions)) if state.conditions else "",
        )
        self.query_one(StatusBar).show(status)

    def on_activity(self, message: Activity) -> None:
        self.activity = message.text
        self.query_one(StatusBar).progress(message.fraction)
        if self.query(LayerPicker):
            self.query_one(LayerPicker).set_computing(message.layer)
        self.refresh_status()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker of this screen that fails ends up here, shown and never raised."""
        if event.state != WorkerState.ERROR or event.worker.error is None:
            return
        text = describe(event.worker.error)
        if event.worker.group == "engine":
            # The model cannot be opened: nothing to explore, so the explorer ends and the command
            # line prints the reason (an unexpected error as one, with how to see its traceback).
            error = event.worker.error
            self.app.fail(text, None if isinstance(error, UserError) else error)
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
            self.state.collection = Collection.for_model(message.info.name, message.info.fingerprint)
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
    def _want_evidence(self, layer: int) -> None:
        state = self.state
        if layer not in state.evidence and layer not in state.evidence_missing:
            self.look_up_evidence(layer, state.generation)

    @work(thread=True, exclusive=True, group="evidence", exit_on_error=False)
    def look_up_evidence(self, layer: int, generation: int) -> None:
        from tui.corpus_pass import look_up

        self.post_message(EvidenceReady(layer, look_up(self.engine, self.state, layer), generation))

    def action_corpus_pass(self) -> None:
        if self.state.n_layers == 0:
            return
        if any(w.group == "corpus-pass" and w.is_running for w in self.workers):
            self.notify("the corpus pass is running; its progress is in the status line")
            return
        self.notify(
            f"running the model over the corpus for all {self.state.n_layers} layers in the background; "
            "the list gains a lift column and the detail examples when it ends",
            title="corpus pass",
        )
        self.run_corpus_pass(self.state.generation)

    @work(thread=True, exclusive=True, group="corpus-pass", exit_on_error=False)
    def run_corpus_pass(self, generation: int) -> None:
        from tui.corpus_pass import activity, run_corpus_pass

        worker = get_current_worker()

        def listen(progress: ActivationProgress) -> None:
            text, fraction = activity(progress)
            self.post_message(Activity(text, fraction))

        self.post_message(Activity("corpus pass: reading the corpus", None))
        results = run_corpus_pass(self.engine, self.state, listen, lambda: worker.is_cancelled)
        if results is None:
            return
        for layer in sorted(results, key=lambda layer: layer == self.state.layer):  # the shown layer last
            self.post_message(EvidenceReady(layer, results[layer], generation))
        self.post_message(Activity("corpus pass done: lift in the list, examples in the detail", None))

    def on_evidence_ready(self, message: EvidenceReady) -> None:
        if message.generation != self.state.generation:
            return
        self.state.keep_evidence(message.layer, message.evidence)
        if message.evidence is not None and self.result is not None and self.result.layer == message.layer:
            self._show_result(self.result)

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

    def _mark_histogram(self, neuron: int | None) -> None:
        if self.result is not None and neuron is not None:
            self.query_one(MaxDotHistogram).set_marker(float(self.result.max_dot[neuron]))

    def on_neuron_list_highlighted(self, message: NeuronList.Highlighted) -> None:
        self._mark_histogram(message.neuron)

    def on_neuron_list_mark_toggled(self, message: NeuronList.MarkToggled) -> None:
        # The layer comes with the message: by now another layer may be on screen (keys typed ahead).
        try:
            self.state.toggle_mark(message.layer, message.neuron)
        except UserError as error:  # the collection file could not be written
            self.notify(str(error), title="mark not saved", severity="error")
        self._refresh_marks()

    def action_undo(self) -> None:
        """Undo this explorer's last mark, unmark or note (the collection file is changed back)."""
        collection = self.state.collection
        if collection is None:
            return
        try:
            undone = collection.undo()
        except UserError as error:
            self.notify(str(error), title="undo not saved", severity="error")
            return
        if undone is None:
            self.notify("nothing to undo: no mark or note was changed in this explorer", severity="warning")
        else:
            self.notify(f"undid the {undone}", title="undo")
        self._refresh_marks()

    def _refresh_marks(self) -> None:
        listing = self.query_one(NeuronList)
        listing.marked = self.state.marked
        listing.refresh()
        self.refresh_status()

    def action_note(self) -> None:
        """A short note on the highlighted neuron; writing one marks the neuron."""
        neuron = self.query_one(NeuronList).current_neuron
        collection, layer = self.state.collection, self.state.layer
        if neuron is None or collection is None or layer is None:
            return

        def save(text: str | None) -> None:
            if text is None:
                return
            try:
                collection.set_note(layer, neuron, text)
            except UserError as error:
                self.notify(str(error), title="note not saved", severity="error")
            self._refresh_marks()

        label = neuron_label(layer, neuron)
        hint = "Enter saves (the neuron is marked), Escape cancels"
        self.app.push_screen(PromptScreen(f"Note for {label}", collection.note(layer, neuron), hint), save)

    def action_go_to(self) -> None:
        if self.info is None:
            return
        hint = "L29/N1135, 29:1135, 29/1135, or a neuron of this layer: 1135"
        self.app.push_screen(PromptScreen("Go to neuron", "", hint, "L29/N1135"), self._go_to)

    def _go_to(self, text: str | None) -> None:
        if not text or self.info is None:
            return
        try:
            target = parse_neuron_ref(text, self.state.layer, self.info.n_layers, self.info.d_mlp)
        except NeuronRefError as error:
            self.notify(str(error), title="go to", severity="error")
            return
        self.jump_to_neuron(target)

    def on_layer_picker_chosen(self, message: LayerPicker.Chosen) -> None:
        self.show_layer(message.layer)
        self.query_one(NeuronList).focus()

    # --- list actions -----------------------------------------------------------------------
    def action_cycle_sort(self) -> None:
        self.state.cycle_sort()
        self._resort()

    def action_reverse_sort(self) -> None:
        self.state.reverse_sort()
        self._resort()

    def _resort(self) -> None:
        if self.result is not None:
            self._show_result(self.result, from_top=True)
        self.refresh_status()

    def action_filter(self) -> None:
        current = ", ".join(map(str, self.state.conditions))
        hint = "a number = minimum max-dot; or e.g. kurtosis>10, null_z>3, class=prediction; empty clears"
        self.app.push_screen(PromptScreen("Filter neurons", current, hint, "0.5"), self._apply_filter)

    def _apply_filter(self, text: str | None) -> None:
        if text is None:
            return
        try:
            self.state.conditions = parse_filter(text)
        except FilterError as error:
            self.notify(str(error), title="filter not applied", severity="error")
            return
        if self.result is not None:
            self._show_result(self.result, from_top=True)
        self.refresh_status()

    def action_toggle_histogram(self) -> None:
        self.query_one(MaxDotHistogram).toggle_mode()

    def action_grow_histogram(self) -> None:
        self.toggle_class("-tall-histogram")

    def on_neuron_list_selected(self, message: NeuronList.Selected) -> None:
        from tui.screens.detail import NeuronDetailScreen

        if self.neurons is None or self.info is None or self.vocab is None:
            return
        neurons, settings = self.neurons, self.state.settings

        def score_row(neuron: int) -> np.ndarray:
            return self.engine.neuron_scores(neurons.layer, neuron, settings)

        listing = self.query_one(NeuronList)
        order = listing.listed_neurons
        self.app.push_screen(
            NeuronDetailScreen(self.info, neurons, order, message.neuron, self.vocab, score_row)
        )

    def follow_neuron(self, neuron: int) -> None:
        """The detail stepped to another neuron: the list's cursor follows."""
        listing = self.query_one(NeuronList)
        listing.set_order(listing.order, keep_neuron=neuron)

    # --- other views ------------------------------------------------------------------------
    def action_all_layers(self) -> None:
        from tui.screens.all_layers import AllLayersScreen

        if self.info is None:
            return
        screen = AllLayersScreen(
            self.info.name,
            self.state.settings.projection.label,
            self.info.n_layers,
            self.state.summaries,
            self.state.layer,
            self.summary_added,
        )
        self.app.push_screen(screen, self._jump_to_layer)

    def _jump_to_layer(self, layer: int | None) -> None:
        if layer is not None:
            self.show_layer(layer)

    def action_collection(self) -> None:
        from tui.screens.collection import CollectionScreen

        collection = self.state.collection
        if collection is None or self.info is None or self.vocab is None:
            return
        settings = self.state.settings

        def layer_neurons(layer: int) -> LayerNeurons:
            return LayerNeurons.derive(
                self.engine.layer(layer, settings),
                self.engine.null_baseline(settings),
                settings.projection.cosine,
            )

        screen = CollectionScreen(self.info.name, collection, self.vocab, layer_neurons, self.action_export)
        self.app.push_screen(screen, self._open_collected)

    def _open_collected(self, target: tuple[int, int] | None) -> None:
        if target is not None:
            self.state.pending_detail = True
            self.jump_to_neuron(target)

    def jump_to_neuron(self, target: tuple[int, int] | None) -> None:
        """Open ``(layer, neuron)`` with the cursor on that neuron (neuron -1: just the layer)."""
        if target is None:
            return
        layer, neuron = target
        self.state.jump_to(neuron if neuron >= 0 else None)
        self.show_layer(layer)

    def action_text_probe(self) -> None:
        from tui.screens.text_probe import TextProbeScreen

        if self.vocab is None or self.info is None or self.state.layer is None:
            return
        # What the probe's worker may read, taken here on the event loop: workers never read the state.
        engine, settings, held = self.engine, self.state.settings, dict(self.state.results)

        def probe(text: str, layers: list[int], top: int):
            return engine.probe(text, layers, top, settings, held)

        screen = TextProbeScreen(self.state.layer, self.info.n_layers, self.vocab, probe)
        self.app.push_screen(screen, self._open_collected)

    def action_token_search(self) -> None:
        from engine.scan.token_search import TokenIndex
        from tui.screens.token_search import TokenSearchScreen

        if self.vocab is None or self.info is None:
            return
        if self.token_index is None:
            self.token_index = TokenIndex(self.vocab)
        tables = dict(sorted(self.state.token_tables.items()))
        self.app.push_screen(
            TokenSearchScreen(self.token_index, tables, self.info.n_layers), self.jump_to_neuron
        )

    def action_coverage(self) -> None:
        from engine.scan.coverage import coverage_from_layers
        from tui.screens.coverage import CoverageScreen

        if self.info is None or self.vocab is None:
            return
        if self.state.null is None or not self.state.unit_best:
            self.notify(
                "coverage needs the null baseline and at least one computed layer: still computing",
                severity="warning",
            )
            return
        coverage = coverage_from_layers(self.state.unit_best, self.state.null)
        label = self.state.settings.projection.label
        screen = CoverageScreen(self.info.name, label, coverage, self.vocab, self.info.n_layers)
        self.app.push_screen(screen, self.jump_to_neuron)

    def action_projection(self) -> None:
        from tui.screens.projection import ProjectionScreen

        self.app.push_screen(ProjectionScreen(self.state.settings.projection), self.apply_projection)

    def apply_projection(self, projection: Projection | None) -> None:
        """Switch projection: every layer is read from the cache or computed again under it."""
        if projection is None or self.info is None or not self.state.switch_projection(projection):
            return
        self.neurons = None
        self.query_one(LayerPicker).clear_summaries()
        if self.state.layer is not None:
            self.show_layer(self.state.layer)
        self.run_scanner()

    # --- export -----------------------------------------------------------------------------
    def action_export(self) -> None:
        """Export the collection (every marked neuron, all layers); with nothing marked, say how."""
        collection = self.state.collection
        if collection is None or not len(collection):
            self.notify(
                "the collection is empty: mark neurons with space, or press E to export the listed neurons",
                severity="warning",
            )
            return
        layers = collection.layers()
        title = f"Export the collection: {len(collection)} neurons from {len(layers)} layer(s)"
        self._ask_path(title, "neurons-collection.csv", self._export_collection)

    def action_export_listed(self) -> None:
        if self.result is None:
            self.notify("nothing to export yet: the layer is still being computed", severity="warning")
            return
        listed = len(self.query_one(NeuronList).order)
        title = f"Export the {listed} listed neurons of layer {self.result.layer}"
        self._ask_path(title, f"neurons-layer{self.result.layer}.csv", self._export_listed)

    def _ask_path(self, title: str, name: str, then: Callable[[str], None]) -> None:
        """Ask for a file to write; refuse what the explorer cannot write to, and ask before
        replacing a file that exists (Enter replaces it, Escape keeps it)."""
        hint = ".csv, .json or .jsonl, by extension; ~ is your home"

        def chosen(text: str | None) -> None:
            path = (text or "").strip()
            if not path:
                return
            if path == "-":
                self.notify(
                    "'-' means standard output, which the explorer draws on: give a file path "
                    "(or use neuron-tui collection -o - from a shell)",
                    title="export",
                    severity="error",
                )
                return
            target = Path(path).expanduser()
            if target.is_dir():
                self.notify(
                    f"{path} is a folder: add a file name ending in .csv, .json or .jsonl",
                    title="export",
                    severity="error",
                )
                return
            if target.exists():
                question = f"{target} exists. Replace it?"
                self.app.push_screen(
                    ConfirmScreen(question, "Enter replaces it, Escape keeps the old file"),
                    lambda yes: then(path) if yes else self.notify(f"kept {target}", title="export"),
                )
                return
            then(path)

        self.app.push_screen(PromptScreen(title, str(self.export_dir / name), hint), chosen)

    def _export_listed(self, path: str) -> None:
        if self.neurons is None or self.info is None or self.vocab is None:
            return
        neurons, chosen, settings = (
            self.neurons,
            self.query_one(NeuronList).listed_neurons,
            self.state.settings,
        )
        name, vocab = self.info.name, self.vocab
        self.write_export(
            path.strip(), lambda: neuron_records(name, vocab, neurons, chosen, k=settings.top_k), settings
        )

    def _export_collection(self, path: str) -> None:
        collection = self.state.collection
        if collection is None or self.info is None or self.vocab is None:
            return
        settings, engine, name, vocab = self.state.settings, self.engine, self.info.name, self.vocab

        def records():
            null = engine.null_baseline(settings)

            def layer_neurons(layer: int) -> LayerNeurons:
                return LayerNeurons.derive(engine.layer(layer, settings), null, settings.projection.cosine)

            return collection_records(name, vocab, collection, layer_neurons, k=settings.top_k)

        self.write_export(path.strip(), records, settings)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, path: str, records: Callable[[], Iterator[dict]], settings: ScanSettings) -> None:
        """Records are made here, in the worker: a collection may need layers read or computed."""
        assert self.info is not None
        count = write_records(path, records(), export_settings(self.info, settings))
        self.app.call_from_thread(self.notify, f"wrote {count} neurons to {path}", title="exported")
