"""Activation evidence on the main screen: looked up in the cache as a layer opens (the most read
under any token cap), and the corpus pass (A): a dialog chooses the layers and the token cap, a
worker runs it, each layer's evidence lands as it is read, and A again stops it.

A part of ``MainScreen`` (a mixin on ``MainParts``); its methods run as the screen's own.
"""

from __future__ import annotations

from textual import work
from textual.worker import get_current_worker

from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.progress import ActivationProgress
from engine.errors import ScanCancelled
from tui.corpus_pass import PassPlan, cap_words, default_cap, plan_pass
from tui.messages import Activity, EvidenceReady
from tui.screens.main_parts import MainParts
from tui.screens.pass_dialog import PassChoice


class EvidenceWork(MainParts):
    def _want_evidence(self, layer: int) -> None:
        state = self.state
        if layer not in state.evidence and layer not in state.evidence_missing:
            self.look_up_evidence(layer, state.generation)

    @work(thread=True, exclusive=True, group="evidence", exit_on_error=False)
    def look_up_evidence(self, layer: int, generation: int) -> None:
        from tui.corpus_pass import look_up

        found = look_up(self.engine, self.state, layer)
        evidence, reading = found if found is not None else (None, None)
        self.post_message(EvidenceReady(layer, evidence, generation, reading))

    def layer_pass_plan(self, layer: int) -> PassPlan:
        """A pass over one layer with the default cap (the detail's a)."""
        return plan_pass(self.state, [layer], default_cap(self.engine, self.state))

    def evidence_landed(self, layer: int, evidence: LayerActivations, reading: EvidenceReading) -> None:
        """From any thread: a pass has read more of ``layer`` (the detail's pass calls this too)."""
        self.post_message(EvidenceReady(layer, evidence, self.state.generation, reading))

    # --- the corpus pass (A) ------------------------------------------------------------------
    def _pass_running(self) -> bool:
        return any(w.group == "corpus-pass" and w.is_running for w in self.workers)

    def action_corpus_pass(self) -> None:
        from tui.screens.confirm import ConfirmScreen
        from tui.screens.pass_dialog import PassDialog

        if self.state.n_layers == 0 or self.state.layer is None:
            return
        if self._pass_running():

            def stop(yes: bool | None) -> None:
                if yes:
                    self.workers.cancel_group(self, "corpus-pass")

            question = "Stop the corpus pass?"
            hint = "What it has read stays in the cache; the next pass over the same layers resumes there."
            self.app.push_screen(ConfirmScreen(question, hint), stop)
            return
        cap = default_cap(self.engine, self.state)
        device = "a CPU" if self.engine.on_cpu else "a GPU"
        if self.state.activation.max_tokens is not None:
            device = f"{device} (--max-tokens)"
        layer = self.state.layer

        def start(choice: PassChoice | None) -> None:
            if choice is None:
                return
            layers = list(range(self.state.n_layers)) if choice.all_layers else [layer]
            plan = plan_pass(self.state, layers, choice.cap)
            self.notify(
                f"reading {cap_words(choice.cap)} for {plan.layers_label}; evidence shows as it "
                "lands (the list's lift, the detail's examples); A stops",
                title="corpus pass",
            )
            self.run_corpus_pass(plan, self.state.generation)

        self.app.push_screen(PassDialog(layer, self.state.n_layers, cap, device), start)

    @work(thread=True, exclusive=True, group="corpus-pass", exit_on_error=False)
    def run_corpus_pass(self, plan: PassPlan, generation: int) -> None:
        from tui.corpus_pass import activity, run_planned_pass

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

    def on_evidence_ready(self, message: EvidenceReady) -> None:
        if message.generation != self.state.generation:
            return
        kept = self.state.keep_evidence(message.layer, message.evidence, message.reading)
        if kept and self.result is not None and self.result.layer == message.layer:
            self._show_result(self.result)
