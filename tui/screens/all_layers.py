"""All layers at once (the seed's "Extending to other layers"): how max-dot and kurtosis shift with
depth, and how many prediction and suppression neurons each layer has. Pending layers fill in as
the background scan lands; Enter jumps to the highlighted layer."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.signal import Signal
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from engine.data.summary import LayerSummary
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

COLUMNS = ("layer", "p50", "p90", "p99", "max", "kurt p99", "★ null-z>3", "pred", "supp")


class AllLayersScreen(Screen[int | None]):
    BINDINGS = [
        Binding("escape,q,a", "close", "Back", id="close-all-layers"),
        Binding("enter", "jump", "Open layer", id="jump"),
    ]

    DEFAULT_CSS = """
    AllLayersScreen #all-plots { height: 1fr; min-height: 8; }
    AllLayersScreen #all-table { height: 1fr; }
    AllLayersScreen PlotextPlot { width: 1fr; }
    """

    def __init__(
        self,
        model: str,
        projection: str,
        n_layers: int,
        summaries: dict[int, LayerSummary],
        current: int | None,
        summary_added: Signal[LayerSummary],
    ) -> None:
        super().__init__()
        self.model, self.projection, self.n_layers, self.current = model, projection, n_layers, current
        self.summaries = dict(summaries)
        self.summary_added = summary_added  # layers that land while the view is open

    def compose(self) -> ComposeResult:
        yield TitleBar(Text(f"{self.model} · {self.projection} · all {self.n_layers} layers"), id="all-title")
        with Horizontal(id="all-plots"):
            yield PlotextPlot(id="max-dot-by-layer")
            yield PlotextPlot(id="classes-by-layer")
        yield KeyTable(id="all-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        for layer in range(self.n_layers):
            table.add_row(*self._cells(layer), key=str(layer))
        if self.current is not None:
            table.move_cursor(row=self.current)
        table.focus()
        self._replot()
        self.summary_added.subscribe(self, self.update_summary)

    def _cells(self, layer: int) -> list:
        summary = self.summaries.get(layer)
        label = Text(f"L{layer}", style="bold" if layer == self.current else "")
        if summary is None:
            return [label] + [Text("pending", style="dim")] + [""] * (len(COLUMNS) - 2)
        return [
            label,
            f"{summary.p50:.3f}",
            f"{summary.p90:.3f}",
            f"{summary.p99:.3f}",
            f"{summary.max:.3f}",
            f"{summary.kurtosis_p99:.1f}",
            str(summary.n_standout),
            Text(str(summary.n_prediction), style="green"),
            Text(str(summary.n_suppression), style="red"),
        ]

    def update_summary(self, summary: LayerSummary) -> None:
        self.summaries[summary.layer] = summary
        table = self.query_one(DataTable)
        for column, value in zip(COLUMNS, self._cells(summary.layer)):
            table.update_cell(str(summary.layer), column, value)
        self._replot()

    def _replot(self) -> None:
        layers = sorted(self.summaries)
        upper = self.query_one("#max-dot-by-layer", PlotextPlot)
        plot = upper.plt
        plot.clear_data()
        plot.title(f"max-dot quantiles by layer ({len(layers)}/{self.n_layers} computed)")
        if layers:
            for name, colour in (("p50", "blue"), ("p90", "cyan"), ("p99", "green"), ("max", "yellow")):
                plot.plot(
                    layers,
                    [getattr(self.summaries[layer], name) for layer in layers],
                    label=name,
                    color=colour,
                    marker="braille",
                )
            plot.xlabel("layer")
        upper.refresh()
        lower = self.query_one("#classes-by-layer", PlotextPlot)
        plot = lower.plt
        plot.clear_data()
        plot.title("prediction / suppression neurons (kurtosis > 10)")
        if layers:
            plot.multiple_bar(
                layers,
                [
                    [self.summaries[layer].n_prediction for layer in layers],
                    [self.summaries[layer].n_suppression for layer in layers],
                ],
                # plotext takes these lists; textual-plotext's stub names only the single forms
                labels=["prediction", "suppression"],  # type: ignore[call-arg]
                color=["green", "red"],  # type: ignore[arg-type]
            )
            plot.xlabel("layer")
        lower.refresh()

    def action_jump(self) -> None:
        table = self.query_one(DataTable)
        self.dismiss(int(table.cursor_row))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(int(str(event.row_key.value)))

    def action_close(self) -> None:
        self.dismiss(None)
