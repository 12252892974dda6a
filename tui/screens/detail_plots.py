"""The detail's two plots: the neuron's dots with the whole vocabulary (from the counts the scan
stored, so they show without the model), and where its max-dot per unit norm sits among random
directions. Each keeps a title and axis labels at every size the detail lays them out at."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from engine.data.null import NullBaseline
from engine.data.results import LayerResult
from engine.data.score_histogram import linear_counts

HIST_BINS = 60


Bins = tuple[np.ndarray, np.ndarray]  # centres, counts


def draw_score_histogram(widget: PlotextPlot, result: LayerResult, neuron: int) -> Bins:
    """The neuron's scores over the whole vocabulary, from the scan's stored counts; the bins'
    centres and counts drawn (log scale: a few tokens far out would not show on a linear one)."""
    lowest, highest = float(result.suppress_dots[neuron, 0]), float(result.promote_dots[neuron, 0])
    stored, top, mean = result.score_hist[neuron], result.score_hist_top, float(result.mean[neuron])
    centres, counts = linear_counts(stored, top, mean, lowest, highest, HIST_BINS)
    plot = widget.plt
    plot.clear_data()
    plot.title(f"its dots with all {int(result.score_hist[neuron].sum())} tokens")
    plot.plot(centres.tolist(), np.log10(counts + 1).tolist(), fillx=True, color="cyan")
    plot.xlabel("dot")
    plot.ylabel("log10(1+count)")
    widget.refresh()
    return centres, counts


def draw_null_histogram(widget: PlotextPlot, null: NullBaseline | None, per_unit: float) -> None:
    """Random directions' max-dots per unit norm (bars) and this neuron's (a line). The x range
    takes in the neuron with a margin, so its line is never drawn on the plot's frame."""
    plot = widget.plt
    plot.clear_data()
    if null is None:
        plot.title("null baseline not computed yet")
        widget.refresh()
        return
    plot.title("random directions (bars), it (line)")
    plot.hist(null.values.tolist(), bins=40, color="magenta")
    plot.vertical_line(per_unit, color="yellow")
    low, high = min(float(null.values.min()), per_unit), max(float(null.values.max()), per_unit)
    margin = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
    plot.xlim(low - margin, high + margin)
    plot.xlabel("max |dot| per unit norm")
    plot.ylabel("directions")
    widget.refresh()
