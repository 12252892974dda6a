"""The layer's max-dot distribution (the seed's central figure), or its sorted max-dot curve,
with the highlighted neuron marked and the null baseline overlaid."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

MAX_CURVE_POINTS = 400


def _with_margin(low: float, high: float) -> tuple[float, float]:
    """The x range with a little room at both ends: the highlighted neuron's line, at the largest or
    smallest value, is drawn inside the plot rather than over its frame."""
    margin = 0.02 * (high - low) or 0.02 * abs(high) or 0.02
    return low - margin, high + margin


class MaxDotHistogram(PlotextPlot):
    DEFAULT_CSS = """
    MaxDotHistogram { height: 14; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: np.ndarray | None = None
        self.null_values: np.ndarray | None = None  # null max-dots on the scale of this layer's neurons
        self.marker: float | None = None
        self.sorted_curve = False
        self.title = ""
        self.units = "neurons"  # what is counted: the neurons, or a dictionary's features

    def show(
        self,
        values: np.ndarray | None,
        title: str,
        null_values: np.ndarray | None = None,
        units: str = "neurons",
    ) -> None:
        self.values, self.title, self.null_values, self.units = values, title, null_values, units
        self.replot()

    def set_marker(self, value: float | None) -> None:
        self.marker = value
        self.replot()

    def toggle_mode(self) -> None:
        self.sorted_curve = not self.sorted_curve
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title(self.title)
        if self.values is None or not len(self.values):
            self.refresh()
            return
        if self.sorted_curve:
            ordered = np.sort(self.values)[::-1]
            # A few hundred points draw the same curve as tens of thousands, in a fraction of the time.
            ranks = np.unique(
                np.linspace(0, len(ordered) - 1, min(len(ordered), MAX_CURVE_POINTS)).round().astype(int)
            )
            plt.plot(
                ranks.tolist(),
                ordered[ranks].tolist(),
                marker="braille",
                color="cyan",
            )
            # Ticks of their own: the histogram's max-dot ticks must not linger on the rank axis.
            tick_ranks = np.linspace(0, len(ordered) - 1, 5).round().astype(int)
            plt.xticks(tick_ranks.tolist(), [str(rank) for rank in tick_ranks])
            plt.xlim(*_with_margin(0.0, float(len(ordered) - 1)))
            plt.xlabel("rank")
            plt.ylabel("max |dot|")
            if self.marker is not None:
                rank = int((ordered > self.marker).sum())
                plt.vertical_line(rank, color="yellow")
        else:
            low = float(
                min(self.values.min(), self.null_values.min() if self.null_values is not None else np.inf)
            )
            high = float(self.values.max())
            bins = 50
            # numpy bins the values; plotext only draws the bars (its own binning is pure Python).
            counts, edges = np.histogram(self.values, bins=bins, range=(low, high))
            centres = ((edges[:-1] + edges[1:]) / 2).tolist()
            # The legend goes under the axis, by glyph: drawn in the plot it would cover the bars.
            plt.bar(centres, counts.tolist(), width=1.0, color="cyan")
            ticks = np.linspace(low, high, 5)
            plt.xticks(ticks.tolist(), [f"{tick:.3g}" for tick in ticks])
            plt.xlim(*_with_margin(low, high))
            if self.null_values is not None:
                # Scaled to the neuron count so both shapes compare on one axis.
                null_counts, _ = np.histogram(self.null_values, bins=bins, range=(low, high))
                scale = len(self.values) / max(len(self.null_values), 1)
                plt.plot(centres, (null_counts * scale).tolist(), color="magenta", marker="braille")
            legend = (
                f" · █ {self.units} · ⠒ random directions"
                if self.null_values is not None
                else " over the vocabulary"
            )
            plt.xlabel(f"max |dot|{legend}")
            plt.ylabel(self.units)
            if self.marker is not None:
                plt.vertical_line(self.marker, color="yellow")
        self.refresh()
