"""Token search: type text, pick a matching token, see its best neurons across the computed
layers; Enter jumps to that neuron in its layer."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, OptionList, Static
from textual.widgets.option_list import Option

from engine.data.token_index import TokenIndex, TokenMatch
from tui.neuron_ref import NEURON_NAMES, UnitNames
from tui.render import score_style, token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyOptionList, KeyTable
from tui.widgets.title_bar import TitleBar

TokenTable = tuple[np.ndarray, np.ndarray]  # per layer: neurons [V, N], dots [V, N]


class TokenSearchScreen(MarkKeys, Screen[tuple[int, int] | None]):
    BINDINGS = [
        Binding("escape", "close", "Back", id="close-search"),
        Binding("tab", "app.focus_next", "Next pane", show=False),
        *mark_bindings("search"),  # the text field types a space: these act in the lists
    ]

    DEFAULT_CSS = """
    TokenSearchScreen #search-body { height: 1fr; }
    TokenSearchScreen #matches { width: 32; height: 1fr; }
    TokenSearchScreen #token-neurons { width: 1fr; height: 1fr; }
    TokenSearchScreen #neuron-hits { height: 1fr; }
    TokenSearchScreen #search-note { height: auto; color: $text-muted; padding: 0 1; }
    """

    class Matched(Message):
        def __init__(self, query: str, matches: list[TokenMatch]) -> None:
            super().__init__()
            self.query, self.matches = query, matches

    def __init__(
        self,
        index: TokenIndex,
        tables: dict[int, TokenTable],
        n_layers: int,
        top: int = 10,
        names: UnitNames = NEURON_NAMES,
    ) -> None:
        """``n_layers``: the layers that have units of the kind listed; ``names``: how they are named."""
        super().__init__()
        self.index, self.tables, self.n_layers, self.top, self.names = index, tables, n_layers, top, names
        self.matches: list[TokenMatch] = []
        self.rows: list[tuple[int, int]] = []

    def compose(self) -> ComposeResult:
        yield TitleBar(
            "Token search: type a token's text (a leading space matters: ' the')", id="search-title"
        )
        yield Input(placeholder="token text, e.g. ' coming'", id="search-input")
        with Horizontal(id="search-body"):
            yield KeyOptionList(id="matches")
            with Vertical(id="token-neurons"):
                yield KeyTable(id="neuron-hits", cursor_type="row", zebra_stripes=True)
                yield Static("", id="search-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("layer", self.names.word, "dot", "|dot| rank in layer")
        self.query_one(Input).focus()

    @on(Input.Changed, "#search-input")
    def _typed(self, event: Input.Changed) -> None:
        self.find(event.value)

    @on(Input.Submitted, "#search-input")
    def _submitted(self) -> None:
        self.query_one(OptionList).focus()

    @work(thread=True, exclusive=True, group="token-search", exit_on_error=False)
    def find(self, text: str) -> None:
        self.post_message(self.Matched(text, self.index.search(text, limit=60) if text else []))

    def on_token_search_screen_matched(self, message: Matched) -> None:
        if message.query != self.query_one(Input).value:
            return  # a later keystroke is on its way
        self.matches = message.matches
        options = self.query_one(OptionList)
        options.clear_options()
        for match in message.matches:
            label = Text(token_label(match.text, 20), style="bold" if match.exact else "")
            label.append(f"  #{match.token_id}", style="dim")
            options.add_option(Option(label, id=str(match.token_id)))
        if message.matches:
            options.highlighted = 0
            self.show_token(message.matches[0].token_id)
        else:
            self.query_one(DataTable).clear()
            self.query_one("#search-note", Static).update("no token matches" if message.query else "")

    @on(OptionList.OptionHighlighted, "#matches")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show_token(int(str(event.option.id)))

    @on(OptionList.OptionSelected, "#matches")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.show_token(int(str(event.option.id)))
        self.query_one(DataTable).focus()

    def show_token(self, token_id: int) -> None:
        hits = []
        for layer, (neurons, dots) in self.tables.items():
            for rank, (neuron, dot) in enumerate(zip(neurons[token_id].tolist(), dots[token_id].tolist())):
                hits.append((abs(dot), layer, neuron, dot, rank))
        hits.sort(key=lambda hit: (-hit[0], hit[1], hit[2]))
        table = self.query_one(DataTable)
        table.clear()
        self.rows = []
        for _, layer, neuron, dot, rank in hits[: self.top * 3]:
            table.add_row(
                f"L{layer}",
                self.names.in_layer(layer, neuron),
                Text(f"{dot:+.4f}", style=score_style(dot)),
                str(rank + 1),
            )
            self.rows.append((layer, neuron))
        pending = self.n_layers - len(self.tables)
        token = self.index.vocab.text(token_id)
        note = f"best {self.names.word}s of {token!r} (#{token_id}) in {len(self.tables)} computed layers"
        if pending:
            note += f"; {pending} still pending"
        self.query_one("#search-note", Static).update(Text(note + " · Enter on a row opens it"))

    def marking_target(self) -> tuple[int, int] | None:
        """The neuron row under the cursor (the best neuron of the token when the list has focus)."""
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.rows):
            self.dismiss(self.rows[event.cursor_row])

    def action_close(self) -> None:
        self.dismiss(None)
