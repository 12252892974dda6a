"""One neuron in full: top tokens by |dot|, promoted and suppressed tokens side by side, its
statistics, and the histogram of its scores over the whole vocabulary."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from engine.neurons import LayerNeurons
from engine.sources.base import ModelInfo
from engine.tokens import Vocabulary
from tui.render import score_style, token_label


def _token_table(title: str, ids: np.ndarray, dots: np.ndarray, vocab: Vocabulary, limit: int = 24) -> Table:
    table = Table(title=title, title_style="bold", box=None, show_header=False, padding=(0, 1))
    table.add_column("token", no_wrap=True)
    table.add_column("dot", justify="right")
    for token_id, dot in zip(ids.tolist(), dots.tolist()):
        style = score_style(dot)
        table.add_row(
            Text(token_label(vocab.text(token_id), limit), style=f"bold {style}"),
            Text(f"{dot:+.3f}", style=style),
        )
    return table


class NeuronDetailScreen(Screen[None]):
    """``score_row`` computes the neuron's float64 scores against the whole vocabulary (slow: it
    may load the weights), so it runs in a worker."""

    BINDINGS = [Binding("escape,q", "close", "Back", id="back")]

    DEFAULT_CSS = """
    NeuronDetailScreen #detail-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    NeuronDetailScreen #detail-body { height: 1fr; }
    NeuronDetailScreen #detail-tokens { width: 1fr; min-width: 42; }
    NeuronDetailScreen #detail-plots { width: 1fr; }
    NeuronDetailScreen PlotextPlot { height: 1fr; }
    """

    def __init__(
        self,
        info: ModelInfo,
        neurons: LayerNeurons,
        neuron: int,
        vocab: Vocabulary,
        score_row: Callable[[], np.ndarray],
    ) -> None:
        super().__init__()
        self.info, self.neurons, self.neuron, self.vocab, self.score_row = (
            info,
            neurons,
            neuron,
            vocab,
            score_row,
        )
        self.result = neurons.result
        self.stats = neurons.stats(neuron)
        self.scores: np.ndarray | None = None
        self.scores_settled = False

    def compose(self) -> ComposeResult:
        r, n = self.result, self.neuron
        title = f"{self.info.name} · layer {r.layer} of 0-{self.info.n_layers - 1} · neuron {n}"
        yield Static(Text(title), id="detail-title")
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
        s = self.stats
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("max |dot|", f"{s.max_dot:.4f}")
        table.add_row("|W_out[i]|", f"{s.norm:.4f}")
        table.add_row("mean / std", f"{s.mean:+.4f} / {s.std:.4f}")
        table.add_row("skew", f"{s.skew:+.3f}")
        table.add_row("kurtosis", f"{s.kurtosis:.2f}")
        table.add_row("class", s.klass or "—")
        if s.null_z is not None:
            table.add_row("null z / pct", f"{s.null_z:+.2f} / {s.null_pct:.1f}%")
        return table

    class ScoresReady(Message):
        def __init__(self, scores: np.ndarray | None, error: str | None = None) -> None:
            super().__init__()
            self.scores, self.error = scores, error

    @work(thread=True, exclusive=True, group="neuron-scores", exit_on_error=False)
    def load_scores(self) -> None:
        """The neuron's full score row: one float64 product, after loading weights if needed."""
        self.post_message(self.ScoresReady(self.score_row()))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error  # shown in the plot's title; the screen stays usable
            self.post_message(
                self.ScoresReady(None, str(error).splitlines()[0] if str(error) else type(error).__name__)
            )

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
        if self.neurons.null is not None:
            null_plot.title("random directions vs this neuron (line)")
            null_plot.hist(self.neurons.null.values.tolist(), bins=40, color="magenta")
            null_plot.vertical_line(self.stats.per_unit, color="yellow")
            null_plot.xlabel("max |dot| per unit norm")
        else:
            null_plot.title("null baseline not computed yet")

    def action_close(self) -> None:
        self.dismiss(None)
