"""One neuron ablated on text (x in the detail): at each position in turn its activation is set to
0 and the rest of the model recomputed; the view shows the change of the predicted token's logit
there (Δ logit) beside what the weights predict of it (direct = −dla, the final norm's scale held
fixed) and the rest (indirect: the layers above, the norm's scale). The text probed last is typed
in already; the ablation runs in a worker with its progress shown, and leaving the view (Escape)
stops it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from engine.data.attribution import NeuronAblation
from engine.data.progress import AttributionListener, AttributionProgress
from engine.data.tokens import Vocabulary
from engine.errors import ScanCancelled, describe
from tui.neuron_ref import neuron_label
from tui.render import token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

# Ablates one neuron on a text: (text, neuron, listener, cancelled); raises ScanCancelled when stopped.
Ablate = Callable[[str, int, AttributionListener, Callable[[], bool]], NeuronAblation]
EMPTY_HINT = "type a sentence above, then Enter: the neuron is ablated at each of its tokens in turn"


class AblationScreen(MarkKeys, Screen[None]):
    """``ablate(text, neuron, listener, cancelled)`` ablates ``neuron`` of ``layer`` on the text."""

    BINDINGS = [
        Binding("escape", "close", "Back (stops it)", id="close-ablation"),
        *mark_bindings("ablation"),
    ]

    DEFAULT_CSS = """
    AblationScreen #ablation-table { height: 1fr; }
    AblationScreen #ablation-note { height: auto; color: $text-muted; padding: 0 1; }
    """

    class Progressed(Message):
        def __init__(self, progress: AttributionProgress) -> None:
            super().__init__()
            self.progress = progress

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, AblationScreen.Progressed)

    class Ablated(Message):
        def __init__(self, found: NeuronAblation | None, error: str | None = None) -> None:
            super().__init__()
            self.found, self.error = found, error

    def __init__(self, layer: int, neuron: int, vocab: Vocabulary, ablate: Ablate, text: str = "") -> None:
        super().__init__()
        self.ablated_layer, self.neuron, self.vocab = layer, neuron, vocab
        self.ablate, self.start_text = ablate, text
        self.found: NeuronAblation | None = None

    def compose(self) -> ComposeResult:
        yield TitleBar(id="ablation-title")
        yield Input(
            value=self.start_text, placeholder="a sentence to ablate the neuron on", id="ablation-input"
        )
        yield KeyTable(id="ablation-table", cursor_type="row", zebra_stripes=True)
        yield Static(EMPTY_HINT, id="ablation-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "pos", "token", "predicts", "activation", "Δ logit", "direct", "indirect"
        )
        label = neuron_label(self.ablated_layer, self.neuron)
        title = f"{label} ablated at each token · Enter runs · Escape stops"
        self.query_one("#ablation-title", Static).update(Text(title))
        self.query_one(Input).focus()
        if self.start_text.strip():
            self._run(self.start_text)

    def marking_target(self) -> tuple[int, int] | None:
        return self.ablated_layer, self.neuron

    @on(Input.Submitted, "#ablation-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self._run(event.value)
        else:
            self.query_one("#ablation-note", Static).update(Text(EMPTY_HINT))

    def _run(self, text: str) -> None:
        self.query_one("#ablation-note", Static).update("ablating (the first run loads the model)…")
        self.run_ablation(text)

    @work(thread=True, exclusive=True, group="ablation", exit_on_error=False)
    def run_ablation(self, text: str) -> None:
        worker = get_current_worker()
        try:
            found = self.ablate(text, self.neuron, self._said, lambda: worker.is_cancelled)
        except ScanCancelled:
            return
        except Exception as error:  # shown in the note; the screen stays usable
            self.post_message(self.Ablated(None, describe(error)))
            return
        self.post_message(self.Ablated(found))

    def _said(self, progress: AttributionProgress) -> None:
        self.post_message(self.Progressed(progress))

    def on_ablation_screen_progressed(self, message: Progressed) -> None:
        done, total = message.progress.done, message.progress.total
        self.query_one("#ablation-note", Static).update(Text(f"ablating: {done} of {total} positions…"))

    def on_ablation_screen_ablated(self, message: Ablated) -> None:
        if message.found is None:
            self.query_one("#ablation-note", Static).update(Text(f"cannot ablate: {message.error}"))
            return
        self.show(message.found)

    def show(self, found: NeuronAblation) -> None:
        self.found = found
        table = self.query_one(DataTable)
        table.clear()
        for p in range(found.n_positions):
            marked = bool(found.marked[p])
            delta, direct = float(found.delta_logit[p]), float(found.direct[p])
            table.add_row(
                f"{p}*" if marked else str(p),
                Text(
                    token_label(self.vocab.text(int(found.token_ids[p])), 14), style="dim" if marked else ""
                ),
                Text(token_label(self.vocab.text(int(found.target_ids[p])), 14)),
                f"{float(found.activation[p]):+.3f}",
                Text(f"{delta:+.4f}", style="red" if delta < 0 else "green"),
                f"{direct:+.4f}",
                f"{delta - direct:+.4f}",
            )
        # The field keeps the focus, as in the text probe: what is typed next is a new text, never
        # the table's keys (space marks, n writes a note). Tab reaches the table.
        self.query_one("#ablation-note", Static).update(self._summary(found))

    def _summary(self, found: NeuronAblation) -> Text:
        deltas = found.delta_logit
        worst = int(np.argmin(deltas))
        note = Text(
            f"{found.n_positions} tokens · the largest drop {deltas[worst]:+.4f} at {worst} "
            f"(predicting {token_label(self.vocab.text(int(found.target_ids[worst])), 14)})"
        )
        spread = float(np.abs(deltas).sum())
        if spread > 0:
            share = float(np.abs(found.direct).sum()) / spread
            note.append(f" · |direct| / |Δ| summed: {share:.2f}")
        note.append(
            "\nΔ logit: the neuron set to 0 at that token alone, the rest recomputed; direct: what its"
        )
        note.append(" weights predict (−dla, the final norm's scale held fixed); indirect: Δ − direct")
        return note

    def action_close(self) -> None:
        self.dismiss(None)
