"""The background scan: every layer and the null baseline, computed (or read) one at a time in the
order ``tui.scan_plan`` gives, the layer on screen first; a layer the user left is abandoned for
the new one. A dictionary's features are scanned in the layers that have a dictionary; with a
dictionary open, the other kind's units of those layers come after, for the all-layers view to
set neurons and features side by side. It draws nothing: its results go up to the screen as
messages."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from textual import work
from textual.widget import Widget
from textual.worker import Worker, get_current_worker

from engine.data.neurons import LayerNeurons
from engine.data.null import NullBaseline
from engine.data.progress import ScanProgress
from engine.data.results import LayerResult
from engine.data.summary import summarise
from engine.errors import ScanCancelled
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.messages import Activity, LayerReady, LayerSummarised, NullReady, ScanFinished, report_failure
from tui.scan_plan import NULL_BASELINE, next_scan_target, should_abandon
from tui.state import ExplorerState

PROGRESS_INTERVAL = 0.1  # seconds between progress messages from the scanner


@dataclass(frozen=True)
class ScanPlan:
    """What one scan reads, taken on the event loop: the kind listed (its generation, settings
    and layers, None for every layer) and, with a dictionary open, the other kind's generation,
    settings and the dictionary's layers it has no summary of yet."""

    generation: int
    settings: ScanSettings
    n_layers: int
    layers: list[int] | None
    other: tuple[int, ScanSettings, list[int]] | None


class BackgroundScan(Widget):
    DEFAULT_CSS = "BackgroundScan { display: none; }"

    def __init__(self, engine: NeuronEngine, state: ExplorerState) -> None:
        super().__init__()
        self.engine, self.state = engine, state
        self.waiting = False  # for the first frame: the scan starts once the first layer shows
        self.running = False
        self.scans = 0  # scans started: a replaced scan's end does not end the new one
        self.done: set[int] = set()  # layers this scan has computed (their results not kept)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(self, event)  # up to the screen, which says so

    def start(self, after_first_frame: bool = False) -> None:
        """Scan now, or (``after_first_frame``) once ``first_frame_shown`` says the screen is up."""
        if after_first_frame:
            self.waiting = True
        else:
            self.waiting = False
            self._begin()

    def first_frame_shown(self) -> None:
        if self.waiting:
            self.waiting = False
            self._begin()

    def _begin(self) -> None:
        self.scans += 1
        # Layers summarised already (of the kind shown, in this generation) are not read again.
        self.running, self.done = True, set(self.state.summaries)
        state = self.state  # what the scan reads is taken here, on the event loop
        layers = state.unit_layers() if state.features else None
        plan = ScanPlan(state.generation, state.settings, state.n_layers, layers, self._other_kind())
        self.scan_all(self.scans, plan)

    def will_compute(self, layer: int) -> bool:
        """Whether this scan is yet to reach ``layer`` (the layer on screen comes next)."""
        return self.waiting or (self.running and layer not in self.done)

    @work(thread=True, exclusive=True, group="scanner", exit_on_error=False)
    def scan_all(self, scan: int, plan: ScanPlan) -> None:
        """Compute layers one at a time in the order ``next_scan_target`` gives. A scan of a layer
        the user left is abandoned for the new one."""
        worker = get_current_worker()
        try:
            shape = (plan.n_layers, plan.layers)
            null = self._scan(worker, plan.generation, plan.settings, shape, self.done)
            if plan.other is not None and null is not None and not worker.is_cancelled:
                self._compare(worker, null, *plan.other)
        finally:
            if scan == self.scans:  # not replaced by a newer scan
                self.running = False

    def _other_kind(self) -> tuple[int, ScanSettings, list[int]] | None:
        """With a dictionary open: the other kind's generation, settings and the dictionary's
        layers it has no summary of yet."""
        state, units = self.state, self.state.other_units()
        if units is None or units.digest not in state.kinds:
            return None
        held = state.kinds[units.digest]
        missing = [layer for layer in sorted(state.dictionary_infos) if layer not in held.summaries]
        return held.generation, replace(state.settings, units=units), missing

    def _compare(
        self, worker: Worker, null: NullBaseline, generation: int, settings, layers: list[int]
    ) -> None:
        """The other kind's units of the dictionary's layers, summarised for the all-layers view."""
        word = "features" if settings.units.is_dictionary else "neurons"
        for layer in layers:
            self.post_message(Activity(f"reading the {word} of layer {layer} to compare", None))
            try:
                result = self.engine.layer(layer, settings, cancelled=lambda: worker.is_cancelled)
            except ScanCancelled:
                return
            self.post_message(self._summarised(result, null, settings, generation))
        if layers:
            self.post_message(Activity(f"{word} of {len(layers)} layer(s) read to compare (a)", None))

    @staticmethod
    def _summarised(
        result: LayerResult, null: NullBaseline | None, settings: ScanSettings, generation: int
    ) -> LayerSummarised:
        n = settings.token_top_n
        return LayerSummarised(
            summarise(LayerNeurons.derive(result, null, settings.projection.cosine)),
            generation,
            token_table=(result.token_neurons[:, :n].copy(), result.token_dots[:, :n].copy()),
            unit_best=(result.token_unit_best, result.token_unit_best_neuron),
        )

    def _scan(
        self,
        worker: Worker,
        generation: int,
        settings: ScanSettings,
        shape: tuple[int, list[int] | None],
        done: set[int],
    ) -> NullBaseline | None:
        """The layers of ``shape`` (the model's count, and the dictionary's layers or None for
        all); the null baseline once it is known."""
        state, (n_layers, layers) = self.state, shape
        null = None
        while not worker.is_cancelled:
            target = next_scan_target(n_layers, state.layer, done, null is not None, layers)
            if target is None:
                break
            if target == NULL_BASELINE:
                verb = "reading" if self.engine.has_null_baseline(settings) else "computing"
                self.post_message(Activity(f"{verb} the null baseline", None))
                null = self.engine.null_baseline(settings)
                self.post_message(NullReady(null, generation))
                continue

            def abandon(layer: int = target) -> bool:
                return worker.is_cancelled or should_abandon(layer, state.layer, done)

            try:
                result = self.engine.layer(target, settings, listener=self._listener(), cancelled=abandon)
            except ScanCancelled:
                continue
            done.add(target)
            if target == state.layer:
                self.post_message(LayerReady(result, generation))
            self.post_message(self._summarised(result, null, settings, generation))
        if worker.is_cancelled:
            return None
        if null is None:  # every layer was summarised before this scan: the baseline is still due
            null = self.engine.null_baseline(settings)
            self.post_message(NullReady(null, generation))
        done_text = (
            f"all {n_layers} layers computed"
            if layers is None
            else f"features of {len(layers)} layer(s) computed"
        )
        self.post_message(Activity(done_text, None))
        self.post_message(ScanFinished(generation))
        return null

    def _listener(self):
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

        return listener
