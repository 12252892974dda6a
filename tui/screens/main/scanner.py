"""The background scan: every layer and the null baseline, computed (or read) one at a time in the
order ``tui.scan_plan`` gives, the layer on screen first; a layer the user left is abandoned for
the new one. It draws nothing: its results go up to the screen as messages."""

from __future__ import annotations

import time

from textual import work
from textual.widget import Widget
from textual.worker import Worker, get_current_worker

from engine.data.neurons import LayerNeurons
from engine.data.progress import ScanProgress
from engine.data.summary import summarise
from engine.errors import ScanCancelled
from engine.neuron_engine import NeuronEngine
from tui.messages import Activity, LayerReady, LayerSummarised, NullReady, ScanFinished, report_failure
from tui.scan_plan import NULL_BASELINE, next_scan_target, should_abandon
from tui.state import ExplorerState

PROGRESS_INTERVAL = 0.1  # seconds between progress messages from the scanner


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
        self.running, self.done = True, set()
        self.scan_all(self.scans)

    def will_compute(self, layer: int) -> bool:
        """Whether this scan is yet to reach ``layer`` (the layer on screen comes next)."""
        return self.waiting or (self.running and layer not in self.done)

    @work(thread=True, exclusive=True, group="scanner", exit_on_error=False)
    def scan_all(self, scan: int) -> None:
        """Compute layers one at a time in the order ``next_scan_target`` gives. A scan of a layer
        the user left is abandoned for the new one."""
        worker = get_current_worker()
        state = self.state
        generation, settings, n_layers = state.generation, state.settings, state.n_layers
        try:
            self._scan(worker, generation, settings, n_layers, self.done)
        finally:
            if scan == self.scans:  # not replaced by a newer scan
                self.running = False

    def _scan(self, worker: Worker, generation: int, settings, n_layers: int, done: set[int]) -> None:
        state = self.state
        null = None
        while not worker.is_cancelled:
            target = next_scan_target(n_layers, state.layer, done, null is not None)
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
