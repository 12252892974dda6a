"""Vocabulary coverage: the share of tokens that some neuron aims at, per layer and overall, and
the best- and least-covered tokens (Enter jumps to a token's best neuron)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from engine.data.coverage import Coverage
from engine.data.tokens import Vocabulary
from tui.neuron_ref import NEURON_NAMES, UnitNames
from tui.render import token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable

BAR_WIDTH = 20
NARROW = 100  # below this many columns: short headers, shorter tokens, the per-layer table without bars


@dataclass(frozen=True)
class Layout:
    """How wide the parts are: the best neuron and the layers that cover a token always show, and
    the token, the headers and the per-layer bars give way at narrow widths."""

    token_cells: int
    bar_cells: int
    token_titles: tuple[str, ...]

    @classmethod
    def for_width(cls, width: int) -> Layout:
        if width < NARROW:
            return cls(13, 0, ("token", "|dot|/|w|", "× p99", "best neuron", "layers"))
        titles = ("token", "best |dot|/|w|", "× null p99", "best neuron", "layers covered")
        return cls(14, BAR_WIDTH, titles)


class CoverageScreen(MarkKeys, Screen[tuple[int, int] | None]):
    BINDINGS = [Binding("escape,q,c", "close", "Back", id="close-coverage"), *mark_bindings("coverage")]

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW, "-wide")]

    DEFAULT_CSS = """
    CoverageScreen #coverage-title { height: auto; background: $panel; padding: 0 1; }
    CoverageScreen #coverage-body { height: 1fr; }
    CoverageScreen #per-layer { width: 46; height: 1fr; }
    CoverageScreen.-narrow #per-layer { width: 25; }
    CoverageScreen #token-lists { width: 1fr; height: 1fr; }
    CoverageScreen .list-title { height: 1; text-style: bold; padding: 0 1; }
    CoverageScreen #best-tokens, CoverageScreen #worst-tokens { height: 1fr; }
    """

    def __init__(
        self,
        model: str,
        projection: str,
        coverage: Coverage,
        vocab: Vocabulary,
        n_layers: int,
        show: int = 40,
        names: UnitNames = NEURON_NAMES,
    ) -> None:
        """``names``: how the units are named (neurons, or a dictionary's features)."""
        super().__init__()
        self.names = names
        self.model, self.projection, self.coverage, self.vocab = model, projection, coverage, vocab
        self.n_layers, self.show = n_layers, show
        self.targets: dict[str, list[tuple[int, int]]] = {}
        self.table_layout: Layout | None = None  # the layout the tables are filled for

    def compose(self) -> ComposeResult:
        c = self.coverage
        head = Text(f"{self.model} · {self.projection} · ", style="bold")
        head.append(
            f"{c.covered.sum()} of {c.d_vocab} tokens ({c.overall_share:.1%}) have a {self.names.word} "
            "aimed at them"
        )
        head.append(
            f"\ncovered = best |dot| / |{self.names.weights}[i]| above the null's 99th percentile "
            f"({c.threshold:.4f}); ",
            style="dim",
        )
        head.append(f"{len(c.layers)} of {self.n_layers} layers computed", style="dim")
        yield Static(head, id="coverage-title")
        with Horizontal(id="coverage-body"):
            yield KeyTable(id="per-layer", cursor_type="row", zebra_stripes=True)
            with Vertical(id="token-lists"):
                yield Static("best covered", classes="list-title")
                yield KeyTable(id="best-tokens", cursor_type="row", zebra_stripes=True)
                yield Static("least covered", classes="list-title")
                yield KeyTable(id="worst-tokens", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self._fill(Layout.for_width(self.app.size.width))
        self.query_one("#best-tokens", DataTable).focus()

    def on_resize(self) -> None:
        layout = Layout.for_width(self.size.width)
        if self.table_layout is not None and layout != self.table_layout:
            self._fill(layout)

    def _fill(self, layout: Layout) -> None:
        """The tables for ``layout``, their cursors where they were."""
        self.table_layout = layout
        c = self.coverage
        per_layer = self.query_one("#per-layer", DataTable)
        row = per_layer.cursor_row
        per_layer.clear(columns=True)
        per_layer.add_columns("layer", "covered", "share", *([""] if layout.bar_cells else []))
        top = max((c.share(layer) for layer in c.layers), default=0.0) or 1.0
        for layer in c.layers:
            share = c.share(layer)
            bar = (
                [Text("█" * int(round(share / top * layout.bar_cells)), style="cyan")]
                if layout.bar_cells
                else []
            )
            per_layer.add_row(f"L{layer}", str(c.covered_per_layer[layer]), f"{share:.1%}", *bar)
        per_layer.move_cursor(row=row)
        for table_id, best in (("best-tokens", True), ("worst-tokens", False)):
            self._fill_tokens(self.query_one(f"#{table_id}", DataTable), best, layout)

    def _fill_tokens(self, table: DataTable, best: bool, layout: Layout) -> None:
        c = self.coverage
        row = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*(title.replace("neuron", self.names.word) for title in layout.token_titles))
        targets: list[tuple[int, int]] = []
        for token_id in c.ranked(self.show, best=best).tolist():
            unit = float(c.best_unit[token_id])
            table.add_row(
                Text(token_label(self.vocab.text(token_id), layout.token_cells)),
                f"{unit:.4f}",
                Text(f"{unit / c.threshold:.2f}", style="green" if unit > c.threshold else "red"),
                self.names.compact(int(c.best_layer[token_id]), int(c.best_neuron[token_id])),
                str(c.covered_layers[token_id]),
            )
            targets.append((int(c.best_layer[token_id]), int(c.best_neuron[token_id])))
        self.targets[str(table.id)] = targets
        table.move_cursor(row=row)

    def marking_target(self) -> tuple[int, int] | None:
        """The best neuron of the token under the cursor, in the token list that has focus."""
        focused = self.focused
        if not isinstance(focused, DataTable):
            return None
        targets = self.targets.get(focused.id or "")
        if not targets or not 0 <= focused.cursor_row < len(targets):
            return None
        return targets[focused.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        targets = self.targets.get(event.data_table.id or "")
        if targets and 0 <= event.cursor_row < len(targets):
            self.dismiss(targets[event.cursor_row])
        elif event.data_table.id == "per-layer":
            self.dismiss((self.coverage.layers[event.cursor_row], -1))

    def action_close(self) -> None:
        self.dismiss(None)
