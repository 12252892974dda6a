"""The layer's max-dot distribution (the seed's central figure), or its sorted max-dot curve,
with the highlighted neuron marked and the null baseline overlaid."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot



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

    def show(self, values: np.ndarray | None, title: str, null_values: np.ndarray | None = None) -> None:
        self.values, self.title, self.null_values = values, title, null_values
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
            plt.plot(np.arange(len(ordered)).tolist(), ordered.tolist(), marker="braille", color="cyan", label="max-dot, sorted")
            plt.xlabel("rank")
            plt.ylabel("max |dot|")
            if self.marker is not None:
                rank = int((ordered > self.marker).sum())
                plt.vertical_line(rank, color="yellow")
        else:
            low = float(min(self.values.min(), self.null_values.min() if self.null_values is not None else np.inf))
            high = float(self.values.max())
            bins = 50
            plt.hist(self.values.tolist(), bins=bins, color="cyan", label="neurons")
            if self.null_values is not None:
                # Scaled to the neuron count so both shapes compare on one axis.
                counts, edges = np.histogram(self.null_values, bins=bins, range=(low, high))
                scale = len(self.values) / max(len(self.null_values), 1)
                centres = ((edges[:-1] + edges[1:]) / 2).tolist()
                plt.plot(centres, (counts * scale).tolist(), color="magenta", marker="braille", label="random directions")
            plt.xlabel("max |dot| over the vocabulary")
            plt.ylabel("neurons")
            if self.marker is not None:
                plt.vertical_line(self.marker, color="yellow")
        self.refresh()
