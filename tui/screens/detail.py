"""One neuron in full: top tokens by |dot|, promoted and suppressed tokens side by side, its
statistics, and the histogram of its scores over the whole vocabulary."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from engine.null import NullBaseline
from engine.results import LayerResult
from engine.tokens import Vocabulary
from tui.render import score_style, token_label


def _token_table(title: str, ids: np.ndarray, dots: np.ndarray, vocab: Vocabulary, limit: int = 24) -> Table:
    table = Table(title=title, title_style="bold", box=None, show_header=False, padding=(0, 1))
    table.add_column("token", no_wrap=True)
    table.add_column("dot", justify="right")
    for token_id, dot in zip(ids.tolist(), dots.tolist()):
        style = score_style(dot)
        table.add_row(Text(token_label(vocab.text(token_id), limit), style=f"bold {style}"), Text(f"{dot:+.3f}", style=style))
    return table


class NeuronDetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="back"),
        Binding("right_square_bracket", "app.next_layer", "Next layer", show=False),
        Binding("left_square_bracket", "app.previous_layer", "Previous layer", show=False),
    ]

    DEFAULT_CSS = """
    NeuronDetailScreen #detail-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    NeuronDetailScreen #detail-body { height: 1fr; }
    NeuronDetailScreen #detail-tokens { width: 1fr; min-width: 42; }
    NeuronDetailScreen #detail-plots { width: 1fr; }
    NeuronDetailScreen PlotextPlot { height: 1fr; }
    """

    def __init__(self, model: str, last_layer: int, result: LayerResult, neuron: int, vocab: Vocabulary,
                 null: NullBaseline | None, null_z: float | None, null_pct: float | None, klass: str, per_unit: float) -> None:
        super().__init__()
        self.model, self.last_layer, self.result, self.neuron, self.vocab = model, last_layer, result, neuron, vocab
        self.null, self.null_z, self.null_pct, self.klass, self.per_unit = null, null_z, null_pct, klass, per_unit
        self.scores: np.ndarray | None = None
        self.scores_settled = False

    def compose(self) -> ComposeResult:
        r, n = self.result, self.neuron
        yield Static(Text(f"{self.model} · layer {r.layer} of 0-{self.last_layer} · neuron {n}"), id="detail-title")
        with Horizontal(id="detail-body"):
            with VerticalScroll(id="detail-tokens"):
                yield Static(self._stats())
                yield Static(_token_table("top by |dot|", r.top_ids[n], r.top_dots[n], self.vocab))
                yield Static(self._promote_suppress())
            with Vertical(id="detail-plots"):
                yield PlotextPlot(id="score-hist")
                yield PlotextPlot(id="null-hist")
        yield Footer()

    def _promote_suppress(self) -> Table:
        """The k most promoted and k most suppressed tokens, side by side."""
        r, n = self.result, self.neuron
        table = Table(box=None, padding=(0, 1), header_style="bold")
        table.add_column("promotes", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)
        table.add_column("suppresses", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)
        for rank in range(r.top_k):
            up_id, up_dot = int(r.promote_ids[n, rank]), float(r.promote_dots[n, rank])
            down_id, down_dot = int(r.suppress_ids[n, rank]), float(r.suppress_dots[n, rank])
            table.add_row(
                Text(token_label(self.vocab.text(up_id), 12), style=f"bold {score_style(up_dot)}"),
                Text(f"{up_dot:+.3f}", style=score_style(up_dot)),
                Text(token_label(self.vocab.text(down_id), 12), style=f"bold {score_style(down_dot)}"),
                Text(f"{down_dot:+.3f}", style=score_style(down_dot)),
            )
        return table

    def _stats(self) -> Table:
        r, n = self.result, self.neuron
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("max |dot|", f"{r.max_dot[n]:.4f}")
        table.add_row("|W_out[i]|", f"{r.norm[n]:.4f}")
        table.add_row("mean / std", f"{r.mean[n]:+.4f} / {r.std[n]:.4f}")
        table.add_row("skew", f"{r.skew[n]:+.3f}")
        table.add_row("kurtosis", f"{r.kurtosis[n]:.2f}")
        table.add_row("class", self.klass or "—")
        if self.null_z is not None:
            table.add_row("null z / pct", f"{self.null_z:+.2f} / {self.null_pct:.1f}%")
        return table

    class ScoresReady(Message):
        def __init__(self, scores: np.ndarray | None, error: str | None = None) -> None:
            super().__init__()
            self.scores, self.error = scores, error

    @work(thread=True, exclusive=True, group="neuron-scores", exit_on_error=False)
    def load_scores(self) -> None:
        """The neuron's full score row: one float64 product, after loading weights if needed."""
        try:
            scores = self.app.engine.neuron_scores(self.result.layer, self.neuron, self.app.settings)
        except Exception as error:  # shown in the plot's title; the screen stays usable
            self.post_message(self.ScoresReady(None, str(error).splitlines()[0] if str(error) else type(error).__name__))
            return
        self.post_message(self.ScoresReady(scores))

    def on_neuron_detail_screen_scores_ready(self, message: ScoresReady) -> None:
        self.scores = message.scores
        self.scores_settled = True
        widget = self.query_one("#score-hist", PlotextPlot)
        plot = widget.plt
        plot.clear_data()
        if message.scores is None:
            plot.title(f"scores unavailable: {message.error}")
            widget.refresh()
            return
        counts, edges = np.histogram(message.scores, bins=60)
        centres = ((edges[:-1] + edges[1:]) / 2).tolist()
        plot.title(f"its dots with all {len(message.scores)} tokens")
        plot.plot(centres, np.log10(counts + 1).tolist(), fillx=True, marker="braille", color="cyan")
        plot.xlabel("dot")
        plot.ylabel("log10(1+count)")
        widget.refresh()

    def on_mount(self) -> None:
        score_plot = self.query_one("#score-hist", PlotextPlot)
        score_plot.plt.title("computing its dots with every token…")
        self.load_scores()
        null_plot = self.query_one("#null-hist", PlotextPlot).plt
        if self.null is not None:
            null_plot.title("random directions vs this neuron (line)")
            null_plot.hist(self.null.values.tolist(), bins=40, color="magenta")
            null_plot.vertical_line(self.per_unit, color="yellow")
            null_plot.xlabel("max |dot| per unit norm")
        else:
            null_plot.title("null baseline not computed yet")

    def action_close(self) -> None:
        self.dismiss(None)
