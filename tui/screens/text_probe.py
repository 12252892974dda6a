"""Type a sentence, see per token the neurons that fire hardest for themselves (in the layer on
screen, or in every layer) and the token each promotes most; Enter probes that one neuron on the
same text. Neurons are ranked by their activation relative to their own scale (their corpus
quantile when a pass has read the corpus, else their spread over this text: the line under the
title says which), with the raw activation beside. Position 0 and special tokens (a BOS) are
shown, marked, and not ranked: their activations are on another scale."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from engine.data.firing import LayerFiring, PromptFiring
from engine.data.tokens import Vocabulary
from engine.errors import describe
from tui.neuron_ref import NEURON_NAMES, UnitNames, routes_through_experts
from tui.render import token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.screens.why_token import Attribute
from tui.widgets.footer import KeyFooter, offered
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

PER_LAYER = 3  # neurons shown per token and layer
EXAMPLE = "She said that she would"
EMPTY_HINT = f"type a sentence above (e.g. {EXAMPLE}), then Enter"


class TextProbeScreen(MarkKeys, Screen[tuple[int, int] | None]):
    """``probe(text, layers)`` runs the model in a worker (slow the first time: it loads it) and
    returns an engine.firing.PromptFiring and, for the neurons shown, the tokens each promotes and
    suppresses most according to the weight scan ({(layer, neuron): (token id, token id)});
    ``probe_layer(layer)`` gives the one-neuron probe's runner for a layer."""

    BINDINGS = [
        Binding("escape", "close", "Back", id="close-probe"),
        # Before the text field's own ctrl+a (start of line; Home does that too): the key the
        # view names works while you type.
        Binding("ctrl+a", "toggle_layers", "This layer / all layers", priority=True, id="probe-layers"),
        Binding("w", "why_token", "Why this token", id="probe-why"),
        *mark_bindings("probe"),
    ]

    DEFAULT_CSS = """
    TextProbeScreen #probe-table { height: 1fr; }
    TextProbeScreen #probe-note { height: auto; color: $text-muted; padding: 0 1; }
    TextProbeScreen #probe-scale { height: auto; color: $text-muted; padding: 0 1; }
    """

    class Probed(Message):
        def __init__(self, text: str, firing, promoted: dict | None = None, error: str | None = None) -> None:
            super().__init__()
            self.text, self.firing, self.promoted, self.error = text, firing, promoted or {}, error

    def __init__(
        self,
        layer: int,
        layers: int | list[int],
        vocab: Vocabulary,
        probe: Callable,
        probe_layer: Callable[[int], Callable[[str], LayerFiring]] | None = None,
        attribute: Attribute | None = None,
        names: UnitNames = NEURON_NAMES,
        why_refusal: str | None = None,
    ) -> None:
        """``layers``: those "all layers" probes (a count: the model's every layer); ``attribute``
        attributes the text's tokens to neurons (w: why this token), unless ``why_refusal`` says in
        one line why it cannot for the units listed; ``names``: how they are named."""
        super().__init__()
        self.attribute, self.names, self.why_refusal = attribute, names, why_refusal
        self.positions: list[int] = []  # each row's position
        self.every_layer = list(range(layers)) if isinstance(layers, int) else list(layers)
        self.shown_layer, self.n_layers, self.vocab = layer, len(self.every_layer), vocab
        self.probe, self.probe_layer = probe, probe_layer
        self.all_layers = False
        self.rows: list[tuple[int, int] | None] = []  # None: a marked position's row
        self.promoted: dict[tuple[int, int], tuple[int, int]] = {}
        self.text = ""
        self.firing: PromptFiring | None = None

    def compose(self) -> ComposeResult:
        yield TitleBar(id="probe-title")
        yield Input(placeholder=f"a sentence, e.g. '{EXAMPLE}'", id="probe-input")
        yield Static("", id="probe-scale")
        yield KeyTable(id="probe-table", cursor_type="row", zebra_stripes=True)
        yield Static(EMPTY_HINT, id="probe-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("pos", "token", "layer", self.names.word, "÷ scale", "activation", "promotes most")
        self._title()
        self.query_one(Input).focus()

    def _title(self) -> None:
        every = (
            f"the {self.n_layers} layers with a dictionary"
            if self.names.features
            else f"all {self.n_layers} layers"
        )
        scope = every if self.all_layers else f"layer {self.shown_layer}"
        self.query_one("#probe-title", Static).update(
            Text(f"Text probe · {scope} · Enter runs the model; on a row, probes that {self.names.word}")
        )

    def _layers(self) -> list[int]:
        return self.every_layer if self.all_layers else [self.shown_layer]

    @on(Input.Submitted, "#probe-input")
    def _submitted(self, event: Input.Submitted) -> None:
        note = self.query_one("#probe-note", Static)
        if not event.value.strip():
            note.update(Text(EMPTY_HINT))
            return
        note.update("running the model (the first run loads it)…")
        self.run_probe(event.value, self._layers())

    @work(thread=True, exclusive=True, group="probe", exit_on_error=False)
    def run_probe(self, text: str, layers: list[int]) -> None:
        try:
            firing, promoted = self.probe(text, layers, PER_LAYER)
            self.post_message(self.Probed(text, firing, promoted))
        except Exception as error:  # shown in the note; the screen stays usable
            self.post_message(self.Probed(text, None, error=describe(error)))

    def on_text_probe_screen_probed(self, message: Probed) -> None:
        note = self.query_one("#probe-note", Static)
        if message.firing is None:
            note.update(Text(f"cannot run the model: {message.error}"))
            return
        self.firing, self.promoted, self.text = message.firing, message.promoted, message.text
        firing = message.firing
        self.query_one("#probe-scale", Static).update(Text(self.names.said(firing.scale)))
        table = self.query_one(DataTable)
        table.clear()
        self.rows, self.positions = [], []
        for position, token_id in enumerate(firing.token_ids.tolist()):
            label = token_label(self.vocab.text(token_id), 16)
            if firing.marked[position]:
                dim = Text("not ranked: another scale", style="dim")
                table.add_row(f"{position}*", Text(label, style="dim"), "", "", "", "", dim)
                self.rows.append(None)
                self.positions.append(position)
                continue
            for rank, (relative, value, layer, neuron) in enumerate(best_neurons(firing, position)):
                tokens = message.promoted.get((layer, neuron))
                promoted = None if tokens is None else tokens[0] if value >= 0 else tokens[1]
                table.add_row(
                    str(position) if rank == 0 else "",
                    Text(label if rank == 0 else ""),
                    f"L{layer}",
                    self.names.in_layer(layer, neuron),
                    f"{relative:+.2f}",
                    f"{value:+.3f}",
                    Text(token_label(self.vocab.text(promoted), 16) if promoted is not None else "…"),
                )
                self.rows.append((layer, neuron))
                self.positions.append(position)
        table.focus()
        runs = not routes_through_experts() and self.why_refusal is None
        why = " · w: why this token" if runs else ""  # only where it runs
        word = self.names.word
        note.update(
            Text(
                f"{len(firing.token_ids)} tokens · top {PER_LAYER} {word}s each (* not ranked) · "
                f"Enter: that {word} on this text{why} · ctrl+a: this layer or all"
            )
        )

    def marking_target(self) -> tuple[int, int] | None:
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from tui.screens.neuron_probe import NeuronProbeScreen, NeuronTokens

        event.stop()
        target = self.rows[event.cursor_row] if 0 <= event.cursor_row < len(self.rows) else None
        if target is None:
            return
        if self.probe_layer is None:
            self.dismiss(target)
            return
        layer, neuron = target
        known = self.promoted.get(target)
        tokens = None if known is None else NeuronTokens(*known)
        screen = NeuronProbeScreen(
            layer, neuron, self.vocab, self.probe_layer(layer), tokens, self.text, names=self.names
        )

        def opened(chosen: tuple[int, int] | None) -> None:
            if chosen is not None:
                self.dismiss(chosen)  # ctrl+o there: open the neuron's detail

        self.app.push_screen(screen, opened)

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """Why this token (w) is not offered where it only says it reads neurons (the key still
        says so)."""
        return offered(super().active_bindings, refused=["probe-why"] if self.why_refusal else [])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "why_token":  # attribution reads dense MLP layers only so far
            return not routes_through_experts()
        return True

    def action_why_token(self) -> None:
        """The neurons that made the token predicted at the highlighted row's position."""
        from tui.screens.why_token import WhyTokenScreen

        if routes_through_experts():
            self.notify(
                "why this token reads dense MLP layers only so far: this model routes through experts"
            )
            return
        if self.why_refusal is not None:  # before the view opens: it attributes to neurons only
            self.notify(self.why_refusal, title="why this token", severity="warning")
            return
        row = self.query_one(DataTable).cursor_row
        if self.attribute is None or not 0 <= row < len(self.positions):
            return

        def chosen(target: tuple[int, int] | None) -> None:
            if target is not None:
                self.dismiss(target)  # its detail opens in the list

        screen = WhyTokenScreen(self.text, self.positions[row], self.vocab, self.attribute)
        self.app.push_screen(screen, chosen)

    def action_toggle_layers(self) -> None:
        self.all_layers = not self.all_layers
        self._title()
        text = self.query_one(Input).value
        if text.strip() and self.firing is not None:
            self.run_probe(text, self._layers())

    def action_close(self) -> None:
        self.dismiss(None)


def best_neurons(
    firing: PromptFiring, position: int, count: int = PER_LAYER
) -> list[tuple[float, float, int, int]]:
    """The position's ``count`` neurons with the largest |relative activation| over the layers
    probed (ties: lower layer, then lower neuron): (relative, activation, layer, neuron)."""
    hits = (
        (
            float(firing.relative[position, li, r]),
            float(firing.activations[position, li, r]),
            layer,
            int(firing.neurons[position, li, r]),
        )
        for li, layer in enumerate(firing.layers)
        for r in range(firing.neurons.shape[2])
    )
    return sorted(hits, key=lambda hit: (-abs(hit[0]), hit[2], hit[3]))[:count]
