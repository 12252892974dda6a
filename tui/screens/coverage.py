"""Vocabulary coverage: the share of tokens that some neuron aims at, per layer and overall, and
the best- and least-covered tokens (Enter jumps to a token's best neuron)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from engine.data.coverage import Coverage
from engine.data.tokens import Vocabulary
from tui.render import token_label
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable

BAR_WIDTH = 20


class CoverageScreen(MarkKeys, Screen[tuple[int, int] | None]):
    BINDINGS = [Binding("escape,q,c", "close", "Back", id="close-coverage"), *mark_bindings("coverage")]

    DEFAULT_CSS = """
    CoverageScreen #coverage-title { height: auto; background: $panel; padding: 0 1; }
    CoverageScreen #coverage-body { height: 1fr; }
    CoverageScreen #per-layer { width: 46; height: 1fr; }
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
    ) -> None:
        super().__init__()
        self.model, self.projection, self.coverage, self.vocab, self.n_layers, self.show = (
            model,
            projection,
            coverage,
            vocab,
            n_layers,
            show,
        )
        self.targets: dict[str, list[tuple[int, int]]] = {}

    def compose(self) -> ComposeResult:
        c = self.coverage
        head = Text(f"{self.model} · {self.projection} · ", style="bold")
        head.append(
            f"{c.covered.sum()} of {c.d_vocab} tokens ({c.overall_share:.1%}) "
            "have a neuron aimed at them in some layer"
        )
        head.append(
            f"\ncovered = best |dot| / |W_out[i]| above the null's 99th percentile ({c.threshold:.4f}); ",
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
        c = self.coverage
        per_layer = self.query_one("#per-layer", DataTable)
        per_layer.add_columns("layer", "covered", "share", "")
        top = max((c.share(layer) for layer in c.layers), default=0.0) or 1.0
        for layer in c.layers:
            share = c.share(layer)
            bar = "█" * int(round(share / top * BAR_WIDTH))
            per_layer.add_row(
                f"L{layer}", str(c.covered_per_layer[layer]), f"{share:.1%}", Text(bar, style="cyan")
            )
        for table_id, best in (("best-tokens", True), ("worst-tokens", False)):
            table = self.query_one(f"#{table_id}", DataTable)
            table.add_columns("token", "best |dot|/|w|", "× null p99", "best neuron", "layers covered")
            self.targets[table_id] = []
            for token_id in c.ranked(self.show, best=best).tolist():
                unit = float(c.best_unit[token_id])
                table.add_row(
                    Text(token_label(self.vocab.text(token_id), 24)),
                    f"{unit:.4f}",
                    Text(f"{unit / c.threshold:.2f}", style="green" if unit > c.threshold else "red"),
                    f"L{c.best_layer[token_id]}:{c.best_neuron[token_id]}",
                    str(c.covered_layers[token_id]),
                )
                self.targets[table_id].append((int(c.best_layer[token_id]), int(c.best_neuron[token_id])))
        self.query_one("#best-tokens", DataTable).focus()

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
