"""Why this token: at one position of the probed text, the neurons whose direct logit attribution to
the token the model predicts there is largest (+) and most negative (−), over every layer, each one
key away from its detail (Enter). The attribution runs in a worker (two forward passes), with its
progress shown; leaving the view stops it."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from engine.data.attribution import NeuronAttribution, TextAttribution
from engine.data.progress import AttributionListener, AttributionProgress
from engine.data.tokens import Vocabulary
from engine.errors import ScanCancelled, describe
from tui.neuron_ref import neuron_label
from tui.render import token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

# Runs the attribution of a text: (text, listener, cancelled); raises ScanCancelled when stopped.
Attribute = Callable[[str, AttributionListener, Callable[[], bool]], TextAttribution]


class WhyTokenScreen(MarkKeys, Screen[tuple[int, int] | None]):
    """``attribute(text, listener, cancelled)`` attributes every position of ``text``; this view
    shows ``position``'s neurons. Dismissed with the neuron chosen (the explorer opens its detail)."""

    BINDINGS = [
        Binding("escape", "close", "Back", id="close-why"),
        *mark_bindings("why"),
    ]

    DEFAULT_CSS = """
    WhyTokenScreen #why-table { height: 1fr; }
    WhyTokenScreen #why-head { height: auto; padding: 0 1; }
    WhyTokenScreen #why-note { height: auto; color: $text-muted; padding: 0 1; }
    """

    class Progressed(Message):
        def __init__(self, progress: AttributionProgress) -> None:
            super().__init__()
            self.progress = progress

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, WhyTokenScreen.Progressed)

    class Attributed(Message):
        def __init__(self, found: TextAttribution | None, error: str | None = None) -> None:
            super().__init__()
            self.found, self.error = found, error

    def __init__(self, text: str, position: int, vocab: Vocabulary, attribute: Attribute) -> None:
        super().__init__()
        self.text, self.position, self.vocab, self.attribute = text, position, vocab, attribute
        self.found: TextAttribution | None = None
        self.rows: list[tuple[int, int]] = []

    def compose(self) -> ComposeResult:
        yield TitleBar(id="why-title")
        yield Static("", id="why-head")
        yield KeyTable(id="why-table", cursor_type="row", zebra_stripes=True)
        yield Static("attributing (the first run loads the model)…", id="why-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("", "neuron", "activation", "dla", "share")
        title = f"Why this token · position {self.position} · Enter opens a neuron · Escape goes back"
        self.query_one("#why-title", Static).update(Text(title))
        self.run_attribution()

    @work(thread=True, exclusive=True, group="why-token", exit_on_error=False)
    def run_attribution(self) -> None:
        worker = get_current_worker()
        try:
            found = self.attribute(self.text, self._said, lambda: worker.is_cancelled)
        except ScanCancelled:
            return
        except Exception as error:  # shown in the note; the screen stays usable
            self.post_message(self.Attributed(None, describe(error)))
            return
        self.post_message(self.Attributed(found))

    def _said(self, progress: AttributionProgress) -> None:
        self.post_message(self.Progressed(progress))

    def on_why_token_screen_progressed(self, message: Progressed) -> None:
        progress = message.progress
        self.query_one("#why-note", Static).update(
            Text(f"attributing: {progress.done} of {progress.total} forward-pass steps…")
        )

    def on_why_token_screen_attributed(self, message: Attributed) -> None:
        note = self.query_one("#why-note", Static)
        if message.found is None:
            note.update(Text(f"cannot attribute: {message.error}"))
            return
        if self.position >= message.found.n_positions:
            note.update(Text("the text changed: probe it again"))
            return
        self.show(message.found)

    def show(self, found: TextAttribution) -> None:
        self.found = found
        p = self.position
        token = token_label(self.vocab.text(int(found.token_ids[p])), 20)
        predicted = token_label(self.vocab.text(int(found.target_ids[p])), 20)
        logit, total = float(found.logits[p]), float(found.neuron_total[p])
        head = Text()
        head.append(f"after {token} the model predicts ")
        head.append(predicted, style="bold")
        head.append(f" · logit {logit:+.3f} · all neurons' direct part {total:+.3f}")
        head.append(" (final norm's scale held fixed)", style="dim")
        self.query_one("#why-head", Static).update(head)
        table = self.query_one(DataTable)
        table.clear()
        self.rows = []
        for sign, entries in (("+", found.neurons(p)), ("−", found.neurons(p, against=True))):
            for entry in entries:
                table.add_row(*self._cells(sign, entry))
                self.rows.append((entry.layer, entry.neuron))
        table.focus()
        self.query_one("#why-note", Static).update(
            Text(
                f"+ the {len(found.neurons(p))} neurons that push {predicted} up most, − those that push "
                "it down most · dla = activation × (W_out·(γ⊙W_U)) / scale · share of the neurons' total"
            )
        )

    @staticmethod
    def _cells(sign: str, entry: NeuronAttribution) -> list:
        share = "—" if entry.share is None else f"{entry.share:+.0%}"
        style = "green" if sign == "+" else "red"
        return [
            Text(sign, style=style),
            neuron_label(entry.layer, entry.neuron),
            f"{entry.activation:+.3f}",
            Text(f"{entry.dla:+.4f}", style=style),
            share,
        ]

    def marking_target(self) -> tuple[int, int] | None:
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.rows):
            self.dismiss(self.rows[event.cursor_row])

    def action_close(self) -> None:
        self.dismiss(None)
