"""Activation evidence for the main screen: looked up in the cache as a layer opens (the most read
under any token cap), and the corpus pass (A): a dialog chooses the layers and the token cap, a
worker runs it, each layer's evidence lands as it is read, and A again stops it. It draws nothing:
the evidence goes up to the screen as ``EvidenceReady``, the pass's progress as ``Activity``."""

from __future__ import annotations

from textual import work
from textual.widget import Widget
from textual.worker import Worker, get_current_worker

from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.progress import ActivationProgress
from engine.errors import ScanCancelled
from engine.neuron_engine import NeuronEngine
from tui.corpus_pass import PassPlan, activity, cap_words, default_cap, look_up, plan_pass, run_planned_pass
from tui.messages import Activity, CorpusChanged, EvidenceReady, report_failure
from tui.screens.pass_dialog import PassChoice
from tui.state import ExplorerState


class Evidence(Widget):
    DEFAULT_CSS = "Evidence { display: none; }"

    def __init__(self, engine: NeuronEngine, state: ExplorerState) -> None:
        super().__init__()
        self.engine, self.state = engine, state

    # --- what the cache holds -----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(self, event)  # up to the screen, which says so

    def want(self, layer: int) -> None:
        """The layer is on screen: find its evidence unless it is held or known to be missing."""
        state = self.state
        if layer not in state.evidence and layer not in state.evidence_missing:
            self.look_up(layer, state.generation)

    @work(thread=True, exclusive=True, group="evidence", exit_on_error=False)
    def look_up(self, layer: int, generation: int) -> None:
        found = look_up(self.engine, self.state, layer)
        evidence, reading = found if found is not None else (None, None)
        self.post_message(EvidenceReady(layer, evidence, generation, reading))

    def layer_pass_plan(self, layer: int) -> PassPlan:
        """A pass over one layer with the default cap (the detail's pass)."""
        return plan_pass(self.state, [layer], default_cap(self.engine, self.state))

    def landed(self, layer: int, evidence: LayerActivations, reading: EvidenceReading) -> None:
        """From any thread: a pass has read more of ``layer`` (the detail's pass calls this too)."""
        self.post_message(EvidenceReady(layer, evidence, self.state.generation, reading))

    # --- the corpus pass (A) ------------------------------------------------------------------
    @property
    def pass_running(self) -> bool:
        return any(w.group == "corpus-pass" and w.is_running for w in self.workers)

    def ask_pass(self, layer: int) -> None:
        """A asked for a pass: stop the running one (after asking), or choose one and start it."""
        from tui.screens.confirm import ConfirmScreen
        from tui.screens.pass_dialog import PassDialog

        if self.pass_running:
            question = "Stop the corpus pass?"
            hint = "What it has read stays in the cache; the next pass over the same layers resumes there."
            self.app.push_screen(ConfirmScreen(question, hint), self._stop_if)
            return
        cap = default_cap(self.engine, self.state)
        device = "a CPU" if self.engine.on_cpu else "a GPU"
        if self.state.activation.max_tokens is not None:
            device = f"{device} (--max-tokens)"

        def start(choice: PassChoice | None) -> None:
            if choice is not None:
                self.start_pass(choice, layer)

        # "All layers": those with units of the kind listed (a dictionary's features: its layers).
        count = len(self.state.unit_layers())
        dialog = PassDialog(layer, count, cap, device, corpus_name=self.state.corpus_spec)
        self.app.push_screen(dialog, start)

    def _stop_if(self, yes: bool | None) -> None:
        if yes:
            self.workers.cancel_group(self, "corpus-pass")

    def start_pass(self, choice: PassChoice, layer: int) -> None:
        layers = self.state.unit_layers() if choice.all_layers else [layer]
        if choice.corpus is not None and choice.corpus != self.state.corpus_spec:
            # Reading another corpus: from now on the list and the detail show its evidence.
            self.state.switch_corpus(choice.corpus, choice.loaded)
            self.post_message(CorpusChanged())
        plan = plan_pass(self.state, layers, choice.cap)
        self.notify(
            f"reading {cap_words(choice.cap)} for {plan.layers_label}; evidence shows as it "
            "lands (the list's lift, the detail's examples); A stops",
            title="corpus pass",
        )
        self.run_pass(plan, self.state.generation)

    @work(thread=True, exclusive=True, group="corpus-pass", exit_on_error=False)
    def run_pass(self, plan: PassPlan, generation: int) -> None:
        worker = get_current_worker()
        name = f"corpus pass ({plan.layers_label})"

        def listen(progress: ActivationProgress) -> None:
            text, fraction = activity(progress, name)
            if progress.stage == "running":
                text += " · A stops"
            self.post_message(Activity(text, fraction))

        def landed(layer: int, evidence: LayerActivations, reading: EvidenceReading) -> None:
            self.post_message(EvidenceReady(layer, evidence, generation, reading))

        self.post_message(Activity(f"{name}: reading the corpus", None))
        try:
            results = run_planned_pass(self.engine, plan, listen, lambda: worker.is_cancelled, landed)
        except ScanCancelled:
            return  # the listener said where it stopped; what was read has landed
        if results is None:
            return
        for layer in sorted(results, key=lambda layer: layer == self.state.layer):  # the shown layer last
            n = results[layer].n_positions
            reading = EvidenceReading(plan.cap, n, n, True)
            self.post_message(EvidenceReady(layer, results[layer], generation, reading))
        self.post_message(Activity(f"{name} done: lift in the list, examples in the detail", None))
