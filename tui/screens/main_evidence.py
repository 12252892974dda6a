"""Activation evidence on the main screen: looked up in the cache as a layer opens, and the corpus
pass (A) in a background worker.

A part of ``MainScreen`` (a mixin on ``MainParts``); its methods run as the screen's own.
"""

from __future__ import annotations

from textual import work
from textual.worker import get_current_worker

from engine.progress import ActivationProgress
from tui.messages import Activity, EvidenceReady
from tui.screens.main_parts import MainParts


class EvidenceWork(MainParts):
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
