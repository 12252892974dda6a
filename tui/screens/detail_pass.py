"""The detail's own corpus pass (A, as on the main screen): the model runs over the corpus for the
neuron's layer only, stopping after it, and the examples fill in as windows are read; A again stops
it (what was read is kept, and the next A resumes there). Leaving the detail stops it too.

A part of ``NeuronDetailScreen`` (a mixin); its methods run as the screen's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.progress import ActivationProgress
from engine.errors import ScanCancelled, describe

if TYPE_CHECKING:
    from textual.screen import Screen

    from engine.data.neurons import LayerNeurons

    _Base = Screen[tuple[int, int] | None]  # the detail: dismissed with a unit of the other kind
else:
    _Base = object

Landed = Callable[[int, LayerActivations, EvidenceReading], None]
# Runs a one-layer pass: (listener, cancelled, on_landed); raises ScanCancelled when stopped.
LayerPass = Callable[[Callable[[ActivationProgress], None], Callable[[], bool], Landed], object]


class PassActivity(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class EvidenceLanded(Message):
    def __init__(self, evidence: LayerActivations, reading: EvidenceReading) -> None:
        super().__init__()
        self.evidence, self.reading = evidence, reading


class LayerPassWork(_Base):
    layer_pass: LayerPass | None
    neurons: LayerNeurons
    neuron: int
    reading: EvidenceReading | None

    if TYPE_CHECKING:

        def show_evidence(self) -> None: ...

    def pass_running(self) -> bool:
        return any(w.group == "layer-pass" and w.is_running for w in self.workers)

    def action_layer_pass(self) -> None:
        if self.layer_pass is None:
            return
        if self.pass_running():
            self.workers.cancel_group(self, "layer-pass")
            self._say(f"stopping the pass over L{self.neurons.layer}…")
            return
        self._say(f"reading text for L{self.neurons.layer}: starting (the first run loads the model)…")
        self.run_layer_pass()

    @work(thread=True, exclusive=True, group="layer-pass", exit_on_error=False)
    def run_layer_pass(self) -> None:
        from tui.corpus_pass import activity

        assert self.layer_pass is not None
        worker = get_current_worker()
        name = f"reading text for L{self.neurons.layer}"

        def listen(progress: ActivationProgress) -> None:
            text, _ = activity(progress, name)
            if progress.stage in ("running", "resuming", "loading", "tokenizing"):
                text += " · A stops"
            self.post_message(PassActivity(text))

        def landed(layer: int, evidence: LayerActivations, reading: EvidenceReading) -> None:
            self.post_message(EvidenceLanded(evidence, reading))

        try:
            results = self.layer_pass(listen, lambda: worker.is_cancelled, landed)
        except ScanCancelled:
            return
        except Exception as error:  # said on the screen; the detail stays usable
            self.post_message(PassActivity(f"{name}: {describe(error)}"))
            return
        if isinstance(results, dict) and self.neurons.layer in results:
            evidence = results[self.neurons.layer]
            n = evidence.n_positions
            cap = self.reading.cap if self.reading is not None else None
            self.post_message(EvidenceLanded(evidence, EvidenceReading(cap, n, n, True)))

    def on_pass_activity(self, message: PassActivity) -> None:
        self._say(message.text)

    def on_evidence_landed(self, message: EvidenceLanded) -> None:
        held = self.reading
        if held is not None and self.neurons.evidence is not None and held.read > message.reading.read:
            return
        self.neurons = replace(self.neurons, evidence=message.evidence)
        self.reading = message.reading
        self.show_evidence()

    def _say(self, text: str) -> None:
        line = self.query_one("#detail-activity", Static)
        line.update(Text(text))
        line.display = bool(text)
