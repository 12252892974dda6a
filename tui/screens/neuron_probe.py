"""One neuron on text you type: its activation on every token, both signs, as a bar whose glyph
says the sign (█ for +, ░ for −: readable without colour), and the token it then promotes (its top
promoted token when it fires positive; when negative it writes −W_out, which promotes its top
suppressed token). Position 0 and special tokens are shown but marked, and the bars are scaled
without them: their activations are on another scale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from engine.data.firing import LayerFiring
from engine.data.tokens import Vocabulary
from engine.errors import describe
from tui.neuron_ref import NEURON_NAMES, UnitNames
from tui.render import token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

BAR_CELLS = 24
EMPTY_HINT = "type a sentence above (e.g. She said that she would), then Enter"


@dataclass(frozen=True)
class NeuronTokens:
    """The neuron's top promoted and top suppressed token ids (from the weight scan)."""

    promote: int
    suppress: int


def activation_bar(value: float, scale: float, cells: int = BAR_CELLS) -> str:
    """|value| / scale of ``cells``, at least one cell when it is not 0; » when past the scale."""
    if value == 0 or scale <= 0:
        return "·"
    glyph = "█" if value > 0 else "░"
    length = abs(value) / scale * cells
    if length > cells:
        return glyph * cells + "»"
    return glyph * max(1, round(length))


def bar_scale(values: np.ndarray, marked: np.ndarray) -> float:
    """The largest |activation| among the unmarked tokens (all tokens when every one is marked)."""
    shown = values[~marked] if (~marked).any() else values
    return float(np.abs(shown).max(initial=0.0))


class NeuronProbeScreen(MarkKeys, Screen[tuple[int, int] | None]):
    """``probe_layer(text)`` runs the model up to the layer in a worker (the first run loads it)."""

    BINDINGS = [
        Binding("escape", "close", "Back", id="close-neuron-probe"),
        Binding("ctrl+o", "open_detail", "Open its detail", id="neuron-probe-open"),
        *mark_bindings("neuron-probe"),
    ]

    DEFAULT_CSS = """
    NeuronProbeScreen #neuron-probe-table { height: 1fr; }
    NeuronProbeScreen #neuron-probe-note { height: auto; color: $text-muted; padding: 0 1; }
    """

    class Probed(Message):
        def __init__(self, text: str, firing: LayerFiring | None, error: str | None = None) -> None:
            super().__init__()
            self.text, self.firing, self.error = text, firing, error

    def __init__(
        self,
        layer: int,
        neuron: int,
        vocab: Vocabulary,
        probe_layer: Callable[[str], LayerFiring],
        tokens: NeuronTokens | None,
        text: str = "",
        firing: LayerFiring | None = None,
        names: UnitNames = NEURON_NAMES,
    ) -> None:
        """``names``: how the unit is named (a neuron, or a dictionary's feature)."""
        super().__init__()
        self.names = names
        self.probed_layer, self.neuron, self.vocab = layer, neuron, vocab
        self.probe_layer, self.tokens = probe_layer, tokens
        self.start_text, self.firing = text, firing
        self.values: np.ndarray | None = None  # this neuron's activation per token, once run

    def compose(self) -> ComposeResult:
        yield TitleBar(id="neuron-probe-title")
        yield Input(
            value=self.start_text,
            placeholder=f"a sentence to run this {self.names.word} on",
            id="neuron-probe-input",
        )
        yield KeyTable(id="neuron-probe-table", cursor_type="row", zebra_stripes=True)
        yield Static("" if self.start_text.strip() or self.firing else EMPTY_HINT, id="neuron-probe-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("pos", "token", "activation", "", "then promotes")
        label = self.names.full(self.probed_layer, self.neuron)
        title = f"{label} on your text · Enter runs the model up to layer {self.probed_layer}"
        self.query_one("#neuron-probe-title", Static).update(Text(title))
        if self.firing is not None:
            self.show(self.firing)
        else:
            self.query_one(Input).focus()
            if self.start_text.strip():
                self._run(self.start_text)

    def marking_target(self) -> tuple[int, int] | None:
        return self.probed_layer, self.neuron

    @on(Input.Submitted, "#neuron-probe-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self._run(event.value)
        else:
            self.query_one("#neuron-probe-note", Static).update(Text(EMPTY_HINT))

    def _run(self, text: str) -> None:
        self.query_one("#neuron-probe-note", Static).update("running the model (the first run loads it)…")
        self.run_probe(text)

    @work(thread=True, exclusive=True, group="neuron-probe", exit_on_error=False)
    def run_probe(self, text: str) -> None:
        try:
            self.post_message(self.Probed(text, self.probe_layer(text)))
        except Exception as error:  # shown in the note; the screen stays usable
            self.post_message(self.Probed(text, None, describe(error)))

    def on_neuron_probe_screen_probed(self, message: Probed) -> None:
        if message.firing is None:
            self.query_one("#neuron-probe-note", Static).update(
                Text(f"cannot run the model: {message.error}")
            )
            return
        self.show(message.firing)

    def show(self, firing: LayerFiring) -> None:
        self.firing = firing
        values = firing.activations[:, self.neuron].astype(np.float64)
        self.values = values
        scale = bar_scale(values, firing.marked)
        table = self.query_one(DataTable)
        table.clear()
        for position, token_id in enumerate(firing.token_ids.tolist()):
            value = float(values[position])
            marked = bool(firing.marked[position])
            then = "—"
            if firing.ran is not None and not firing.ran[position, self.neuron]:
                then = "not routed here"
            elif self.tokens is not None and value != 0:
                promoted = self.tokens.promote if value > 0 else self.tokens.suppress
                then = token_label(self.vocab.text(promoted), 16)
            table.add_row(
                f"{position}*" if marked else str(position),
                Text(token_label(self.vocab.text(token_id), 16), style="dim" if marked else ""),
                f"{value:+.3f}",
                Text(
                    activation_bar(value, scale), style="dim" if marked else ("green" if value > 0 else "red")
                ),
                Text(then),
            )
        table.focus()
        unmarked = ~firing.marked
        note = Text(f"{len(values)} tokens · bars to the largest |activation| ({scale:.3f})")
        if unmarked.any():
            best = int(np.flatnonzero(unmarked)[np.argmax(values[unmarked])])
            worst = int(np.flatnonzero(unmarked)[np.argmin(values[unmarked])])
            note.append(f" · highest {values[best]:+.3f} at {best}, lowest {values[worst]:+.3f} at {worst}")
        note.append(
            "\n* position 0 and special tokens: another scale, left out of the bars' scale and the top"
        )
        self.query_one("#neuron-probe-note", Static).update(note)

    def action_open_detail(self) -> None:
        self.dismiss((self.probed_layer, self.neuron))

    def action_close(self) -> None:
        self.dismiss(None)
