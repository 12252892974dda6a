"""All layers at once (the seed's "Extending to other layers"): how max-dot and kurtosis shift with
depth, and how many prediction and suppression neurons each layer has. Pending layers fill in as
the background scan lands; Enter jumps to the highlighted layer.

Each plot's title and legend sit above it, never over the data, and every series has its own marker
(o p50, + p90, x p99, # max; █ prediction, ▒ suppression) so that the plots read without colour.

With a dictionary open, a last column sets the neurons and the features of each layer side by
side: of the units standing out, how many look like one token (their top promoted or suppressed
tokens are mostly one word), neurons / features; the rest of the row is the kind listed on the main screen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.signal import Signal
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from engine.data.summary import LayerSummary
from tui.neuron_ref import experts_label
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

COLUMNS = ("layer", "p50", "p90", "p99", "max", "kurt p99", "★ null-z>3", "pred", "supp")
SIDE_BY_SIDE = "1-tok N/F"  # the column added with a dictionary: neurons / features like one token
# (summary field, marker, colour): the marker tells the lines apart without colour.
QUANTILES = (("p50", "o", "blue"), ("p90", "+", "cyan"), ("p99", "x", "green"), ("max", "#", "yellow"))
CLASSES = (("prediction", "█", "green"), ("suppression", "▒", "red"))


def legend(title: str, series: tuple[tuple[str, str, str], ...]) -> Text:
    """A plot's title, and under it each series' marker and name (drawn above the plot)."""
    text = Text(title, style="bold")
    text.append("\n")
    for index, (name, marker, colour) in enumerate(series):
        text.append("  " if index else "")
        text.append(marker, style=f"bold {colour}")
        text.append(f" {name}")
    return text


def count_axis(plot, top: int) -> None:
    """A y-axis of counts: from 0 (plotext centres an all-zero series on 0, from -1 to 1) to the
    largest, in whole numbers."""
    top = max(top, 1)
    ticks = sorted({round(t) for t in np.linspace(0, top, min(top, 4) + 1)})
    plot.ylim(0, top)
    plot.yticks(ticks, [str(t) for t in ticks])


@dataclass
class SideBySide:
    """With a dictionary open: each kind's summaries as they land, and the dictionary's layers."""

    neurons: dict[int, LayerSummary]
    features: dict[int, LayerSummary]
    layers: set[int]

    def cell(self, layer: int) -> Text:
        """Neurons / features that stand out and look like one token (— without a dictionary)."""
        neurons, features = self.neurons.get(layer), self.features.get(layer)
        left = "…" if neurons is None else str(neurons.n_one_token)
        right = "—" if layer not in self.layers else "…" if features is None else str(features.n_one_token)
        return Text(f"{left} / {right}")


class AllLayersScreen(Screen[int | None]):
    BINDINGS = [
        Binding("escape,q,a", "close", "Back", id="close-all-layers"),
        Binding("enter", "jump", "Open layer", id="jump"),
    ]

    DEFAULT_CSS = """
    AllLayersScreen #all-plots { height: 1fr; min-height: 10; }
    AllLayersScreen #all-plots > Vertical { width: 1fr; }
    AllLayersScreen .plot-legend { height: auto; padding: 0 1; }
    AllLayersScreen PlotextPlot { height: 1fr; }
    AllLayersScreen #all-table { height: 1fr; }
    """

    def __init__(
        self,
        model: str,
        projection: str,
        n_layers: int,
        summaries: dict[int, LayerSummary],
        current: int | None,
        summary_added: Signal[tuple[bool, LayerSummary]],
        units: str = "neurons",
        side_by_side: SideBySide | None = None,
        projection_short: str = "",
    ) -> None:
        """``summaries``: the kind listed on the main screen (``units`` names it: "neurons", or
        "features: <set>"); ``summary_added`` says each layer of either kind as it lands;
        ``projection_short``: the projection's short label, where the title needs the room."""
        super().__init__()
        self.model, self.projection, self.n_layers, self.current = model, projection, n_layers, current
        self.projection_short = projection_short or projection
        self.summaries = dict(summaries)
        self.summary_added = summary_added  # layers that land while the view is open
        self.units, self.features = units, units != "neurons"
        self.side_by_side = side_by_side
        self.columns = COLUMNS if side_by_side is None else (*COLUMNS, SIDE_BY_SIDE)

    def title_variants(self) -> list[str]:
        """The title, longest first: where it is too long for the screen, the projection's short
        label stands for its full one, then the model's name goes, and then what is left is cut at
        its end (the kind of unit listed, last, keeps the name of its set as far as there is room)."""
        units = f" · {self.units}" if self.side_by_side is not None else ""
        layers = f"all {self.n_layers} layers{units}"
        return [
            f"{self.model} · {self.projection} · {layers}",
            f"{self.model} · {self.projection_short} · {layers}",
            f"{self.projection_short} · {layers}",
        ]

    def compose(self) -> ComposeResult:
        yield TitleBar(id="all-title").fit(*self.title_variants())
        with Horizontal(id="all-plots"):
            with Vertical():
                yield Static(id="max-dot-legend", classes="plot-legend")
                yield PlotextPlot(id="max-dot-by-layer")
            with Vertical():
                classes_legend = legend("kurtosis > 10 by layer (stacked)", CLASSES)
                yield Static(classes_legend, classes="plot-legend")
                yield PlotextPlot(id="classes-by-layer")
        yield KeyTable(id="all-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in self.columns:
            table.add_column(column, key=column)
        for layer in range(self.n_layers):
            table.add_row(*self._cells(layer), key=str(layer))
        if self.current is not None:
            table.move_cursor(row=self.current, scroll=False)
            self.call_after_refresh(self._centre_cursor)  # once the table knows its height
        table.focus()
        self._replot()
        self.summary_added.subscribe(self, self.update_summary)

    def _centre_cursor(self) -> None:
        """The layer shown on the main screen with the layers around it, before and after."""
        table = self.query_one(DataTable)
        rows = table.scrollable_content_region.height - table.header_height
        table.scroll_to(y=max(0, table.cursor_row - rows // 2), animate=False, immediate=True)

    def _cells(self, layer: int) -> list:
        summary = self.summaries.get(layer)
        experts = experts_label(layer)  # a layer of experts says how many
        label = Text(
            f"L{layer}" + (f" {experts}" if experts else ""), style="bold" if layer == self.current else ""
        )
        side = [] if self.side_by_side is None else [self.side_by_side.cell(layer)]
        if summary is None:
            pending = "—" if self._without(layer) else "pending"  # — : no dictionary reads it
            return [label, Text(pending, style="dim")] + [""] * (len(COLUMNS) - 2) + side
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
            *side,
        ]

    def _without(self, layer: int) -> bool:
        """Whether ``layer`` has no units of the kind listed (features, and no dictionary there)."""
        return self.features and self.side_by_side is not None and layer not in self.side_by_side.layers

    def update_summary(self, landed: tuple[bool, LayerSummary]) -> None:
        features, summary = landed
        if self.side_by_side is not None:
            (self.side_by_side.features if features else self.side_by_side.neurons)[summary.layer] = summary
        if features == self.features:
            self.summaries[summary.layer] = summary
            self._replot()
        table = self.query_one(DataTable)
        for column, value in zip(self.columns, self._cells(summary.layer)):
            table.update_cell(str(summary.layer), column, value)

    def _replot(self) -> None:
        layers = sorted(self.summaries)
        total = len(self.side_by_side.layers) if self.features and self.side_by_side else self.n_layers
        title = f"max-dot by layer ({len(layers)}/{total} computed)"
        self.query_one("#max-dot-legend", Static).update(legend(title, QUANTILES))
        upper = self.query_one("#max-dot-by-layer", PlotextPlot)
        plot = upper.plt
        plot.clear_data()
        if layers:
            for name, marker, colour in QUANTILES:
                values = [getattr(self.summaries[layer], name) for layer in layers]
                plot.plot(layers, values, marker=marker, color=colour)
            ticks = sorted({float(round(t)) for t in np.linspace(layers[0], layers[-1], min(len(layers), 6))})
            plot.xticks(ticks, [str(int(t)) for t in ticks])  # layers are whole numbers
            plot.xlabel("layer")
        upper.refresh()
        lower = self.query_one("#classes-by-layer", PlotextPlot)
        plot = lower.plt
        plot.clear_data()
        if layers:
            counts = [
                [self.summaries[layer].n_prediction for layer in layers],
                [self.summaries[layer].n_suppression for layer in layers],
            ]
            # plotext takes these lists; textual-plotext's stub names only the single forms
            markers, colours = [m for _, m, _ in CLASSES], [c for _, _, c in CLASSES]
            # Stacked, not side by side: at 80 columns a layer has about one cell for both bars.
            plot.stacked_bar(layers, counts, marker=markers, color=colours)  # type: ignore[arg-type]
            plot.xlabel("layer")
            count_axis(plot, max(up + down for up, down in zip(*counts)))
        lower.refresh()

    def action_jump(self) -> None:
        table = self.query_one(DataTable)
        self.dismiss(int(table.cursor_row))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(int(str(event.row_key.value)))

    def action_close(self) -> None:
        self.dismiss(None)
