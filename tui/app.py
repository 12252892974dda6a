"""The explorer: a layer picker, the layer's max-dot histogram and its neuron list.

All slow work (model load, layer scans, cache reads) runs in thread workers that post messages;
the event loop only draws and answers keys.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import OrderedDict
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import numpy as np
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from engine.errors import ScanCancelled, UserError
from engine.null import NullBaseline, per_unit_max_dot
from engine.results import LayerResult, prediction_class
from engine.session import NeuronEngine, ScanProgress
from engine.settings import Projection, ScanSettings
from engine.sources.base import ModelInfo
from engine.summary import LayerSummary, summarise
from engine.tokens import Vocabulary
from tui.filtering import SORT_KEYS, Condition, FilterError, neuron_order, parse_filter
from tui.messages import Activity, EngineReady, LayerReady, LayerSummarised, NullReady, WorkFailed
from tui.screens.detail import NeuronDetailScreen
from tui.screens.prompt import PromptScreen
from tui.widgets.histogram import MaxDotHistogram
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.neuron_list import NeuronList
from tui.widgets.status_bar import StatusBar

HELP_INTRO = (
    "neuron-tui projects every MLP neuron's output weights onto the unembedding (W_out[i] @ W_U).\n"
    "max-dot = max |dot| over the vocabulary; top tokens are ranked by |dot|, green promotes, red suppresses.\n"
    "null-z compares a neuron's max-dot per unit norm with random directions; kurt/class follow Gurnee et al. 2024.\n"
)
RESULTS_KEPT = 4


def _describe(error: BaseException) -> str:
    if isinstance(error, UserError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else 'no details'}"


class NeuronApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    TITLE = "neuron-tui"

    BINDINGS = [
        Binding("right_square_bracket", "next_layer", "Next layer", key_display="]", priority=True, id="next-layer"),
        Binding("left_square_bracket", "previous_layer", "Prev layer", key_display="[", priority=True, id="previous-layer"),
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("f", "filter", "Filter", id="filter"),
        Binding("e", "export", "Export", id="export"),
        Binding("h", "toggle_histogram", "Hist/curve", id="histogram"),
        Binding("a", "all_layers", "All layers", id="all-layers"),
        Binding("p", "projection", "Projection", id="projection"),
        Binding("slash", "token_search", "Token search", key_display="/", id="token-search"),
        Binding("c", "coverage", "Coverage", id="coverage"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, engine: NeuronEngine, start_layer: int | None = None, export_dir: Path | None = None, handle_signals: bool = False) -> None:
        super().__init__()
        self.handle_signals = handle_signals
        self.engine = engine
        self.settings: ScanSettings = engine.settings
        self.start_layer = start_layer
        self.export_dir = export_dir or Path.cwd()
        self.info: ModelInfo | None = None
        self.vocab: Vocabulary | None = None
        self.layer: int | None = None  # the layer on screen (or being fetched for it)
        self.result: LayerResult | None = None
        self.results: OrderedDict[int, LayerResult] = OrderedDict()
        self.null: NullBaseline | None = None
        self.summaries: dict[int, LayerSummary] = {}
        self.token_tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per layer: best neurons per token
        self.unit_best: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per layer: coverage arrays
        self.token_index = None  # engine.token_search.TokenIndex, built on the first search
        self.pending_neuron: int | None = None
        self.scanner_waits_for_first_frame = False
        self.sort_key = SORT_KEYS[0]
        self.conditions: list[Condition] = []
        self.activity = "starting"
        self.generation = 0  # bumps when the settings change: stale worker messages are dropped

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
        yield Footer()

    def on_mount(self) -> None:
        if self.handle_signals:
            self._exit_on_signals()
        self.query_one(NeuronList).focus()
        self._fit_to_size()
        self.refresh_status()
        self.start_engine()

    def _exit_on_signals(self) -> None:
        """A dropped SSH connection (SIGHUP), Ctrl-C sent as a signal (SIGINT) or SIGTERM: leave as
        'q' does. Workers stop at their next block; the cache only ever holds whole layers."""
        loop = asyncio.get_running_loop()
        for signum, code in ((signal.SIGHUP, 129), (signal.SIGINT, 130), (signal.SIGTERM, 143)):
            loop.add_signal_handler(signum, partial(self.exit, None, code))

    def on_resize(self) -> None:
        self._fit_to_size()

    def _fit_to_size(self) -> None:
        self.screen.set_class(self.size.width < 100, "narrow")
        self.screen.set_class(self.size.height < 30, "short")

    # --- status -----------------------------------------------------------------------------
    def refresh_status(self) -> None:
        if not self.is_mounted:
            return
        marked = len(self.query_one(NeuronList).marked)
        filter_text = "filter " + ", ".join(map(str, self.conditions)) if self.conditions else ""
        self.query_one(StatusBar).show(
            model=self.info.name if self.info else self.engine.location.display_name,
            device=self.engine.device_label(),
            projection=self.settings.projection.label,
            layer=self.layer,
            last_layer=(self.info.n_layers - 1) if self.info else 0,
            marked=marked,
            activity=self.activity,
            sort=self.sort_key,
            filter_text=filter_text,
        )

    def on_activity(self, message: Activity) -> None:
        self.activity = message.text
        self.query_one(StatusBar).progress(message.fraction)
        if self.is_mounted and self.query(LayerPicker):
            self.query_one(LayerPicker).set_computing(message.layer)
        self.refresh_status()

    def on_work_failed(self, message: WorkFailed) -> None:
        self.activity = f"error: {message.text}"
        self.query_one(StatusBar).progress(None)
        self.notify(message.text, title="error", severity="error", timeout=15)
        if self.result is None:
            self.query_one(NeuronList).clear(f"cannot show this layer: {message.text}")
        self.refresh_status()

    # --- workers ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def start_engine(self) -> None:
        """Model shapes and vocabulary: from the cache when warm, else by loading the model."""
        self.post_message(Activity("reading model", None))
        try:
            info = self.engine.info
            vocab = self.engine.vocabulary
        except Exception as error:  # shown in the app; the worker must not die silently
            self.post_message(WorkFailed(_describe(error)))
            return
        self.post_message(EngineReady(info, vocab))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.info, self.vocab = message.info, message.vocab
        left = self.query_one("#left", Vertical)
        self.query_one("#loading-note").remove()
        left.mount(LayerPicker(message.info.n_layers, id="picker"))
        last = message.info.n_layers - 1
        start = self.start_layer if self.start_layer is not None else last
        if not 0 <= start <= last:
            self.notify(f"--layer {start} is out of range: this model has layers 0-{last}", severity="warning")
            start = min(max(start, 0), last)
        self.show_layer(start)
        if self.engine.is_cached(start, self.settings):
            self.scanner_waits_for_first_frame = True  # the first frame comes first; then the background
        else:
            self.run_scanner()

    @work(thread=True, exclusive=True, group="fetch", exit_on_error=False)
    def fetch_cached(self, layer: int, generation: int) -> None:
        """A cached layer off the disk without waiting for the scanner."""
        try:
            result = self.engine.cached_layer(layer, self.settings)
        except Exception as error:
            self.post_message(WorkFailed(_describe(error)))
            return
        if result is not None:
            self.post_message(LayerReady(result, generation))
        else:
            self.call_from_thread(self._release_scanner)  # not cached after all: the scanner computes it

    @work(thread=True, exclusive=True, group="scanner", exit_on_error=False)
    def run_scanner(self) -> None:
        """Compute layers one at a time: the one on screen first, then the null baseline, then the
        rest nearest first. A scan of a layer the user left is abandoned for the new one."""
        worker = get_current_worker()
        generation = self.generation
        settings = self.settings
        assert self.info is not None
        done: set[int] = set()
        null: NullBaseline | None = None
        last_post = 0.0

        def listener(event: ScanProgress) -> None:
            nonlocal last_post
            now = time.monotonic()
            if event.stage == "loading":
                self.post_message(Activity("loading model weights", None))
            elif event.stage == "scanning" and (now - last_post > 0.1 or event.done == 0):
                last_post = now
                fraction = event.done / event.total if event.total else 0.0
                self.post_message(Activity(f"computing layer {event.layer} ({fraction:.0%})", fraction, event.layer))

        while not worker.is_cancelled:
            wanted = self.layer
            pending = [layer for layer in range(self.info.n_layers) if layer not in done]
            if not pending:
                break
            if wanted is not None and wanted not in done:
                layer = wanted
            elif null is None and wanted is not None:
                layer = None
            else:
                anchor = wanted if wanted is not None else 0
                layer = min(pending, key=lambda candidate: (abs(candidate - anchor), candidate))
            try:
                if layer is None:
                    self.post_message(Activity("computing the null baseline", None))
                    null = self.engine.null_baseline(settings)
                    self.post_message(NullReady(null, generation))
                    continue

                def abandon(target: int = layer) -> bool:
                    # Leave a background layer as soon as the user wants another, uncomputed one.
                    return worker.is_cancelled or (self.layer != target and self.layer is not None and self.layer not in done and target != self.layer)

                result = self.engine.layer(layer, settings, listener=listener, cancelled=abandon)
            except ScanCancelled:
                continue
            except Exception as error:
                self.post_message(WorkFailed(_describe(error)))
                return
            done.add(layer)
            if layer == self.layer:
                self.post_message(LayerReady(result, generation))
            n = settings.token_top_n
            self.post_message(LayerSummarised(
                summarise(result, null, settings.projection.cosine), generation,
                token_table=(result.token_neurons[:, :n].copy(), result.token_dots[:, :n].copy()),
                unit_best=(result.token_unit_best, result.token_unit_best_neuron),
            ))
        if not worker.is_cancelled:
            self.post_message(Activity(f"all {self.info.n_layers} layers computed", None))

    # --- layers -----------------------------------------------------------------------------
    def show_layer(self, layer: int) -> None:
        self.layer = layer
        if self.query(LayerPicker):
            self.query_one(LayerPicker).set_current(layer)
        if layer in self.results:
            self.results.move_to_end(layer)
            self._show_result(self.results[layer])
        else:
            self.result = None
            self.query_one(NeuronList).clear(f"layer {layer}: reading the cache or computing…")
            self.query_one(MaxDotHistogram).show(None, f"layer {layer}: waiting for results")
            self.fetch_cached(layer, self.generation)
        self.refresh_status()

    def on_layer_ready(self, message: LayerReady) -> None:
        if message.generation != self.generation:
            return
        result = message.result
        self.results[result.layer] = result
        self.results.move_to_end(result.layer)
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)
        if result.layer == self.layer and (self.result is None or self.result.layer != result.layer):
            self._show_result(result)
        if self.scanner_waits_for_first_frame:
            self.call_after_refresh(self._release_scanner)

    def _release_scanner(self) -> None:
        if self.scanner_waits_for_first_frame:
            self.scanner_waits_for_first_frame = False
            self.run_scanner()

    def on_layer_summarised(self, message: LayerSummarised) -> None:
        if message.generation != self.generation:
            return
        self.token_tables[message.summary.layer] = message.token_table
        self.unit_best[message.summary.layer] = message.unit_best
        self._store_summary(message.summary)

    def _store_summary(self, summary: LayerSummary) -> None:
        self.summaries[summary.layer] = summary
        if self.query(LayerPicker):
            self.query_one(LayerPicker).set_summary(summary)
        for screen in self.screen_stack:
            if hasattr(screen, "update_summary"):  # the all-layers view fills in as layers land
                screen.update_summary(summary)

    def on_null_ready(self, message: NullReady) -> None:
        if message.generation != self.generation:
            return
        self.null = message.null
        # Layers summarised before the null existed get their standout counts now.
        for result in self.results.values():
            self._store_summary(summarise(result, self.null, self.settings.projection.cosine))
        if self.result is not None:
            self._show_result(self.result)

    def _null_z(self, result: LayerResult) -> np.ndarray | None:
        if self.null is None:
            return None
        return self.null.z_score(per_unit_max_dot(result.max_dot, result.norm, self.settings.projection.cosine))

    def _show_result(self, result: LayerResult) -> None:
        assert self.vocab is not None
        self.result = result
        classes = prediction_class(result.kurtosis, result.skew)
        null_z = self._null_z(result)
        order = neuron_order(result, self.sort_key, self.conditions, classes, null_z)
        neurons = self.query_one(NeuronList)
        neurons.show_layer(result, self.vocab, order, classes, null_z)
        if self.pending_neuron is not None:
            neurons.set_order(order, keep_neuron=self.pending_neuron)
            self.pending_neuron = None
        null_values = None
        if self.null is not None:
            # Null max-dots per unit norm, scaled by the layer's median norm to sit on the same axis.
            scale = 1.0 if self.settings.projection.cosine else float(np.median(result.norm))
            null_values = self.null.values * scale
        shown = f"{len(order)} of {result.d_mlp}" if len(order) != result.d_mlp else f"{result.d_mlp}"
        self.query_one(MaxDotHistogram).show(result.max_dot[order] if len(order) else result.max_dot, f"layer {result.layer}: max-dot of {shown} neurons", null_values)
        self._mark_histogram(neurons.current_neuron)
        self.refresh_status()

    def _mark_histogram(self, neuron: int | None) -> None:
        if self.result is not None and neuron is not None:
            self.query_one(MaxDotHistogram).set_marker(float(self.result.max_dot[neuron]))

    def on_neuron_list_highlighted(self, message: NeuronList.Highlighted) -> None:
        self._mark_histogram(message.neuron)

    def on_neuron_list_marks_changed(self, message: NeuronList.MarksChanged) -> None:
        self.refresh_status()

    def on_layer_picker_chosen(self, message: LayerPicker.Chosen) -> None:
        self.show_layer(message.layer)
        self.query_one(NeuronList).focus()

    def _step_layer(self, delta: int) -> None:
        if self.info is None or self.layer is None:
            return
        target = min(max(self.layer + delta, 0), self.info.n_layers - 1)
        if target != self.layer:
            if not isinstance(self.screen, NeuronDetailScreen):
                self.show_layer(target)
            else:
                self.pop_screen()
                self.show_layer(target)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Layer keys work from anywhere except while typing in a dialog.
        if action in ("next_layer", "previous_layer") and isinstance(self.screen, PromptScreen):
            return False
        # List actions belong to the main screen; hide them (and their keys) elsewhere.
        if action in ("cycle_sort", "filter", "export", "toggle_histogram", "all_layers", "projection", "token_search", "coverage") and len(self.screen_stack) > 1:
            return False
        return True

    def action_next_layer(self) -> None:
        self._step_layer(1)

    def action_previous_layer(self) -> None:
        self._step_layer(-1)

    # --- list actions -----------------------------------------------------------------------
    def action_cycle_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        if self.result is not None:
            self._show_result(self.result)
        self.refresh_status()

    def action_filter(self) -> None:
        current = ", ".join(map(str, self.conditions))
        self.push_screen(
            PromptScreen("Filter neurons", current, "a number = minimum max-dot; or e.g. kurtosis>10, null_z>3, class=prediction; empty clears", "0.5"),
            self._apply_filter,
        )

    def _apply_filter(self, text: str | None) -> None:
        if text is None:
            return
        try:
            self.conditions = parse_filter(text)
        except FilterError as error:
            self.notify(str(error), title="filter not applied", severity="error")
            return
        if self.result is not None:
            self._show_result(self.result)
        self.refresh_status()

    def action_toggle_histogram(self) -> None:
        self.query_one(MaxDotHistogram).toggle_mode()

    def on_neuron_list_selected(self, message: NeuronList.Selected) -> None:
        if self.result is None or self.info is None or self.vocab is None:
            return
        neuron = message.neuron
        result = self.result
        per_unit = float(per_unit_max_dot(result.max_dot[neuron : neuron + 1], result.norm[neuron : neuron + 1], self.settings.projection.cosine)[0])
        null_z = null_pct = None
        if self.null is not None:
            null_z = float(self.null.z_score(np.array([per_unit]))[0])
            null_pct = float(self.null.percentile(np.array([per_unit]))[0])
        klass = str(prediction_class(result.kurtosis[neuron : neuron + 1], result.skew[neuron : neuron + 1])[0])
        self.push_screen(NeuronDetailScreen(self.info.name, self.info.n_layers - 1, result, neuron, self.vocab, self.null, null_z, null_pct, klass, per_unit))

    # --- all layers and projection ----------------------------------------------------------
    def action_all_layers(self) -> None:
        from tui.screens.all_layers import AllLayersScreen

        if self.info is None:
            return
        screen = AllLayersScreen(self.info.name, self.settings.projection.label, self.info.n_layers, self.summaries, self.layer)
        self.push_screen(screen, self._jump_to_layer)

    def _jump_to_layer(self, layer: int | None) -> None:
        if layer is not None:
            self.show_layer(layer)

    def jump_to_neuron(self, target: tuple[int, int] | None) -> None:
        """Open ``(layer, neuron)`` with the cursor on that neuron (neuron -1: just the layer)."""
        if target is None:
            return
        layer, neuron = target
        self.pending_neuron = neuron if neuron >= 0 else None
        if self.pending_neuron is not None:
            self.conditions = []  # the neuron must be listed to be shown
        self.show_layer(layer)

    def action_token_search(self) -> None:
        from engine.token_search import TokenIndex
        from tui.screens.token_search import TokenSearchScreen

        if self.vocab is None or self.info is None:
            return
        if self.token_index is None:
            self.token_index = TokenIndex(self.vocab)
        self.push_screen(TokenSearchScreen(self.token_index, dict(sorted(self.token_tables.items())), self.info.n_layers), self.jump_to_neuron)

    def action_coverage(self) -> None:
        from engine.coverage import coverage_from_layers
        from tui.screens.coverage import CoverageScreen

        if self.info is None or self.vocab is None:
            return
        if self.null is None or not self.unit_best:
            self.notify("coverage needs the null baseline and at least one computed layer: still computing", severity="warning")
            return
        coverage = coverage_from_layers(self.unit_best, self.null)
        self.push_screen(CoverageScreen(self.info.name, self.settings.projection.label, coverage, self.vocab, self.info.n_layers), self.jump_to_neuron)

    def action_projection(self) -> None:
        from tui.screens.projection import ProjectionScreen

        self.push_screen(ProjectionScreen(self.settings.projection), self.apply_projection)

    def apply_projection(self, projection: Projection | None) -> None:
        """Switch projection: every layer is read from the cache or computed again under it."""
        if projection is None or projection == self.settings.projection or self.info is None:
            return
        self.settings = ScanSettings(self.settings.top_k, self.settings.dtype, projection, self.settings.token_top_n)
        self.generation += 1
        self.results.clear()
        self.summaries.clear()
        self.token_tables.clear()
        self.unit_best.clear()
        self.null = None
        self.result = None
        self.query_one(LayerPicker).clear_summaries()
        if self.layer is not None:
            self.show_layer(self.layer)
        self.run_scanner()

    # --- export -----------------------------------------------------------------------------
    def action_export(self) -> None:
        if self.result is None:
            self.notify("nothing to export yet: the layer is still being computed", severity="warning")
            return
        neurons = self.query_one(NeuronList)
        what = f"{len(neurons.marked)} marked" if neurons.marked else f"{len(neurons.order)} listed"
        default = self.export_dir / f"neurons-layer{self.result.layer}.csv"
        self.push_screen(
            PromptScreen(f"Export {what} neurons of layer {self.result.layer}", str(default), ".csv, .json or .jsonl, by extension"),
            self._export_to,
        )

    def _export_to(self, path: str | None) -> None:
        if not path or self.result is None or self.info is None or self.vocab is None:
            return
        neurons = self.query_one(NeuronList)
        chosen = sorted(neurons.marked) if neurons.marked else neurons.listed_neurons
        self.write_export(path.strip(), self.result, chosen)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, path: str, result: LayerResult, neurons: list[int]) -> None:
        from engine.export import export_settings, neuron_records, write_records

        assert self.info is not None and self.vocab is not None
        try:
            records = neuron_records(self.info, self.vocab, result, self.settings, self.null, neurons)
            count = write_records(path, records, export_settings(self.info, self.settings, self.engine.device_label()))
        except (UserError, OSError) as error:
            self.call_from_thread(self.notify, _describe(error), title="export failed", severity="error")
            return
        self.call_from_thread(self.notify, f"wrote {count} neurons to {path}", title="exported")

    # --- help -------------------------------------------------------------------------------
    def _binding_groups(self) -> list[tuple[str, list[Binding]]]:
        return [
            ("anywhere", list(self.BINDINGS)),
            ("neuron list", list(NeuronList.BINDINGS)),
            ("layer picker", [Binding("enter", "select", "Open the highlighted layer")]),
            ("neuron detail", list(NeuronDetailScreen.BINDINGS)),
        ]

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self._binding_groups(), HELP_INTRO))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for where, bindings in self._binding_groups()[:2]:
            for binding in bindings:
                if binding.description and binding.action not in ("quit",):
                    target = self if where == "anywhere" else self.query_one(NeuronList)
                    yield SystemCommand(binding.description, f"key {binding.key_display or binding.key} ({where})", partial(target.run_action, binding.action))
