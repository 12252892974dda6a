"""One neuron in full: its statistics, the 50 tokens it promotes most and the 50 it suppresses most
(with token ids), and the histogram of its scores over the whole vocabulary. Right and left step
to the next and previous neuron in the list's order.

The histogram comes from the counts the scan stored, so it shows at once without the model. The scan
keeps top-k tokens per list (10 by default); the detail shows those at once, then all 50 from the
neuron's exact float64 score row, which a worker computes (loading the weights once)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from engine.columns import COLUMNS
from engine.data.evidence import EvidenceReading
from engine.data.firing import LayerFiring
from engine.data.inputs import LayerInputs
from engine.data.model import ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.results import LayerResult
from engine.data.score_histogram import linear_counts
from engine.data.tokens import Vocabulary
from engine.errors import describe
from tui.neuron_ref import neuron_label
from tui.render import score_style, token_label
from tui.screens.detail_evidence import evidence_view
from tui.screens.detail_pass import LayerPass, LayerPassWork
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.screens.neuron_io import reads_writes_view
from tui.widgets.footer import KeyFooter
from tui.widgets.title_bar import TitleBar

TOKEN_CELLS = 14
DETAIL_TOKENS = 50
HIST_BINS = 60


def _token_cells(token_id: int, dot: float, vocab: Vocabulary) -> list[Text]:
    style = score_style(dot)
    return [
        Text(str(token_id), style="dim"),
        Text(token_label(vocab.text(token_id), TOKEN_CELLS), style=f"bold {style}"),
        Text(f"{dot:+.3f}", style=style),
    ]


class NeuronDetailScreen(LayerPassWork, MarkKeys, Screen[None]):
    """``score_row(neuron)`` computes a neuron's float64 scores against the whole vocabulary (slow:
    it may load the weights), so it runs in a worker."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="back"),
        Binding("right,l", "step(1)", "Next neuron", priority=True, id="next-neuron"),
        Binding("left,h", "step(-1)", "Prev neuron", priority=True, id="previous-neuron"),
        Binding("down,j", "scroll_tokens('down')", "Scroll down", show=False, id="detail-down"),
        Binding("up,k", "scroll_tokens('up')", "Scroll up", show=False, id="detail-up"),
        Binding("pagedown", "scroll_tokens('page_down')", "Page down", show=False, id="detail-page-down"),
        Binding("pageup", "scroll_tokens('page_up')", "Page up", show=False, id="detail-page-up"),
        Binding("home,g", "scroll_tokens('home')", "Top", show=False, id="detail-top"),
        Binding("end,G", "scroll_tokens('end')", "Bottom", show=False, id="detail-bottom"),
        Binding("a", "read_layer", "Read text (a stops)", id="detail-read"),
        Binding("t", "probe_neuron", "Probe", id="detail-probe"),
        *mark_bindings("detail"),
    ]

    DEFAULT_CSS = """
    NeuronDetailScreen #detail-body { height: 1fr; }
    NeuronDetailScreen #detail-tokens { width: 62; }
    NeuronDetailScreen #detail-plots { width: 1fr; }
    NeuronDetailScreen PlotextPlot { height: 1fr; }
    NeuronDetailScreen #detail-activity { height: 1; padding: 0 1; background: $panel; display: none; }
    """

    class Moved(Message):
        """The detail now shows ``neuron``: the list's cursor follows it."""

        def __init__(self, neuron: int) -> None:
            super().__init__()
            self.neuron = neuron

    class InputsReady(Message):
        def __init__(self, inputs) -> None:
            super().__init__()
            self.inputs = inputs

    class ScoresReady(Message):
        def __init__(self, neuron: int, scores: np.ndarray | None, error: str | None = None) -> None:
            super().__init__()
            self.neuron, self.scores, self.error = neuron, scores, error

    def __init__(
        self,
        info: ModelInfo,
        neurons: LayerNeurons,
        order: list[int],
        neuron: int,
        vocab: Vocabulary,
        score_row: Callable[[int], np.ndarray],
        layer_inputs: Callable[[], LayerInputs] | None = None,
        reading: EvidenceReading | None = None,
        layer_pass: LayerPass | None = None,
        probe_layer: Callable[[str], LayerFiring] | None = None,
        against: tuple[str, LayerResult] | None = None,
    ) -> None:
        """``layer_inputs()`` computes the layer's input side (slow: it may read the weights), so it
        runs in a worker too; ``reading`` says how much of the corpus the evidence read;
        ``layer_pass`` runs the model over the corpus for this layer (a); ``probe_layer(text)``
        runs it on typed text (t); ``against``: another checkpoint's name and results of this layer
        (--against), whose lists are shown beside this model's."""
        super().__init__()
        self.against = against
        self.reading, self.layer_pass, self.probe_layer = reading, layer_pass, probe_layer
        self.info, self.neurons, self.vocab, self.score_row = info, neurons, vocab, score_row
        self.layer_inputs = layer_inputs
        self.inputs: LayerInputs | None = neurons.inputs
        self.order = order if neuron in order else [neuron]
        self.neuron = neuron
        self.scores: np.ndarray | None = None
        self.scores_settled = False

    @property
    def result(self):
        return self.neurons.result

    def compose(self) -> ComposeResult:
        yield TitleBar(id="detail-title")
        yield Static(id="detail-activity")
        with Horizontal(id="detail-body"):
            with VerticalScroll(id="detail-tokens"):
                yield Static(id="detail-stats")
                yield Static(id="detail-lists")
                yield Static(id="detail-lists-note")
                yield Static(id="detail-against").set_styles(display="block" if self.against else "none")
                yield Static(id="detail-io")
                yield Static(id="detail-evidence")
            with Vertical(id="detail-plots"):
                yield PlotextPlot(id="score-hist")
                yield PlotextPlot(id="null-hist")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.show_neuron(self.neuron)
        if self.inputs is None and self.layer_inputs is not None:
            self.call_after_refresh(self.load_inputs)

    # --- one neuron -------------------------------------------------------------------------
    def show_neuron(self, neuron: int) -> None:
        self.neuron = neuron
        self.scores, self.scores_settled = None, False
        stats = self.neurons.stats(neuron)
        position = self.order.index(neuron) + 1
        title = (
            f"{neuron_label(self.result.layer, neuron)} · {self.info.name} · layer {self.result.layer} "
            f"of 0-{self.info.n_layers - 1} · {position} of {len(self.order)} listed"
        )
        self.query_one("#detail-title", Static).update(Text(title))
        self.stats_table, self.lists_table = self._stats(stats), self._promote_suppress(neuron)
        self.query_one("#detail-stats", Static).update(self.stats_table)
        self.show_evidence()
        self._show_io()
        self.query_one("#detail-lists", Static).update(self.lists_table)
        self.against_text = self._against_lists(neuron)
        self.query_one("#detail-against", Static).update(self.against_text)
        self.query_one("#detail-tokens", VerticalScroll).scroll_home(animate=False)
        self._draw_score_histogram(neuron)
        if self.result.top_k < DETAIL_TOKENS:
            self.query_one("#detail-lists-note", Static).update(
                Text(f"finding {DETAIL_TOKENS} tokens each side…", style="dim")
            )
        # After the first frame: loading the weights holds the interpreter for seconds.
        self.call_after_refresh(self.load_scores, neuron)
        null_widget = self.query_one("#null-hist", PlotextPlot)
        null_plot = null_widget.plt
        null_plot.clear_data()
        if self.neurons.null is not None:
            null_plot.title("random directions (bars) vs this neuron (line)")
            null_plot.hist(self.neurons.null.values.tolist(), bins=40, color="magenta")
            null_plot.vertical_line(stats.per_unit, color="yellow")
            null_plot.xlabel("max |dot| per unit norm")
        else:
            null_plot.title("null baseline not computed yet")
        null_widget.refresh()

    def show_evidence(self) -> None:
        self.evidence_text = evidence_view(self.neurons.evidence, self.neuron, self.vocab, self.reading)
        self.query_one("#detail-evidence", Static).update(self.evidence_text)

    def marking_target(self) -> tuple[int, int] | None:
        return self.result.layer, self.neuron

    def action_probe_neuron(self) -> None:
        """Type text and see this neuron's activation on every token."""
        from tui.screens.neuron_probe import NeuronProbeScreen, NeuronTokens

        if self.probe_layer is None:
            return
        r, n = self.result, self.neuron
        tokens = NeuronTokens(int(r.promote_ids[n, 0]), int(r.suppress_ids[n, 0]))
        self.app.push_screen(NeuronProbeScreen(r.layer, n, self.vocab, self.probe_layer, tokens))

    def _draw_score_histogram(self, neuron: int) -> None:
        """The neuron's scores over the whole vocabulary, from the scan's stored counts."""
        r = self.result
        lowest, highest = float(r.suppress_dots[neuron, 0]), float(r.promote_dots[neuron, 0])
        centres, counts = linear_counts(
            r.score_hist[neuron], r.score_hist_top, float(r.mean[neuron]), lowest, highest, HIST_BINS
        )
        self.histogram = (centres, counts)
        widget = self.query_one("#score-hist", PlotextPlot)
        plot = widget.plt
        plot.clear_data()
        plot.title(f"its dots with all {int(r.score_hist[neuron].sum())} tokens")
        plot.plot(centres.tolist(), np.log10(counts + 1).tolist(), fillx=True, color="cyan")
        plot.xlabel("dot")
        plot.ylabel("log10(1+count)")
        widget.refresh()

    def _stats(self, s) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column(style="bold")
        table.add_column(justify="right")

        def row(name: str) -> tuple[str, str]:
            column = COLUMNS[name]
            value = column.read(self.neurons)[s.neuron]
            shown = (str(value) or "—") if column.kind == "class" else column.detail_format.format(value)
            return column.detail_label, shown

        rows = [
            row("max_dot"),
            row("norm"),
            ("mean / std", f"{s.mean:+.4f} / {s.std:.4f}"),
            row("skew"),
            row("kurtosis"),
            row("class"),
        ]
        placed = {"max_dot", "norm", "skew", "kurtosis", "class"}
        for column in COLUMNS.values():  # any other statistic the registry shows in the detail
            if column.detail_label and column.name not in placed and column.values(self.neurons) is not None:
                rows.append(row(column.name))
        if s.null_z is not None:
            rows.append(("null z / pct", f"{s.null_z:+.2f} / {s.null_pct:.1f}%"))
        r = self.result
        if r.has_concepts:  # one token or a concept? over the promote list / the suppress list
            n = s.neuron
            rows.append(("words + / −", f"{r.promote_forms[n]} / {r.suppress_forms[n]}"))
            rows.append(
                ("coh z + / −", f"{r.promote_coherence_z[n]:+.1f} / {r.suppress_coherence_z[n]:+.1f}")
            )
            directed = f"{r.promote_coherence_dir_z[n]:+.1f} / {r.suppress_coherence_dir_z[n]:+.1f}"
            rows.append(("coh dir-z + / −", directed))
        for name, value in rows:
            table.add_row(Text(name), Text(value))  # Text: "[i]" is not markup
        return table

    def _promote_suppress(self, n: int, scores: np.ndarray | None = None) -> Table:
        """The tokens it promotes most and suppresses most, side by side, with their ids: the scan's
        lists, or ``DETAIL_TOKENS`` of each from the exact score row (ties: the lower id first)."""
        r = self.result
        if scores is None:
            up_ids, up_dots = r.promote_ids[n], r.promote_dots[n]
            down_ids, down_dots = r.suppress_ids[n], r.suppress_dots[n]
        else:
            up_ids = np.argsort(-scores, kind="stable")[:DETAIL_TOKENS]
            down_ids = np.argsort(scores, kind="stable")[:DETAIL_TOKENS]
            up_dots, down_dots = scores[up_ids], scores[down_ids]
        table = Table(box=None, padding=(0, 1), header_style="bold")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("id", "right"),
            ("+ promotes", "left"),
            ("dot", "right"),
        )
        for title, justify in columns * 2:
            table.add_column(Text(title), justify=justify, no_wrap=True)
        for rank in range(len(up_ids)):
            up = _token_cells(int(up_ids[rank]), float(up_dots[rank]), self.vocab)
            down = _token_cells(int(down_ids[rank]), float(down_dots[rank]), self.vocab)
            table.add_row(*up, *down)
        table.columns[3].header = Text("id")
        table.columns[4].header = Text("− suppresses")
        return table

    def _against_lists(self, n: int) -> Text:
        """The other checkpoint's top tokens of this neuron, and which of them this model shares."""
        if self.against is None:
            return Text()
        name, other = self.against
        mine = self.result
        text = Text(f"\nin {name} (* not in this model's list):\n", style="bold")
        for label, ids, dots, own in (
            ("+", other.promote_ids[n], other.promote_dots[n], set(mine.promote_ids[n].tolist())),
            ("−", other.suppress_ids[n], other.suppress_dots[n], set(mine.suppress_ids[n].tolist())),
        ):
            text.append(f"{label} ")
            for token_id, dot in zip(ids[:10].tolist(), dots[:10].tolist()):
                text.append(token_label(self.vocab.text(int(token_id)), TOKEN_CELLS), style=score_style(dot))
                text.append("" if token_id in own else "*")
                text.append(f" {dot:+.2f}  ", style="dim")
            text.append("\n")
        return text

    def action_step(self, delta: int) -> None:
        position = self.order.index(self.neuron) + delta
        if 0 <= position < len(self.order):
            self.show_neuron(self.order[position])
            self.post_message(self.Moved(self.neuron))

    def _show_io(self) -> None:
        self.io_text = reads_writes_view(self.inputs, self.result, self.neuron, self.vocab)
        self.query_one("#detail-io", Static).update(self.io_text)

    # --- its input side -----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="layer-inputs", exit_on_error=False)
    def load_inputs(self) -> None:
        assert self.layer_inputs is not None
        self.post_message(self.InputsReady(self.layer_inputs()))

    def on_neuron_detail_screen_inputs_ready(self, message: InputsReady) -> None:
        self.inputs = message.inputs
        self._show_io()

    # --- its scores over the vocabulary -----------------------------------------------------
    @work(thread=True, exclusive=True, group="neuron-scores", exit_on_error=False)
    def load_scores(self, neuron: int) -> None:
        """The neuron's full score row: one float64 product, after loading weights if needed."""
        self.post_message(self.ScoresReady(neuron, self.score_row(neuron)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "layer-inputs":
            error = describe(event.worker.error) if event.worker.error is not None else "failed"
            self.query_one("#detail-io", Static).update(Text(f"reads ←: {error}", style="dim"))
            return
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            # Shown in the plot's title; the screen stays usable.
            self.post_message(self.ScoresReady(self.neuron, None, describe(event.worker.error)))

    def on_neuron_detail_screen_scores_ready(self, message: ScoresReady) -> None:
        if message.neuron != self.neuron:
            return  # the user moved on
        self.scores = message.scores
        self.scores_settled = True
        if message.scores is None:
            self.query_one("#detail-lists-note", Static).update(
                Text(f"the scan's {self.result.top_k} tokens each side: {message.error}")
            )
            return
        self.lists_table = self._promote_suppress(self.neuron, message.scores)
        self.query_one("#detail-lists", Static).update(self.lists_table)
        self.query_one("#detail-lists-note", Static).update("")

    def action_scroll_tokens(self, where: str) -> None:
        """The statistics, token lists and examples scroll with the list keys (j/k, Home/End)."""
        panel = self.query_one("#detail-tokens", VerticalScroll)
        moves = {
            "down": panel.scroll_down,
            "up": panel.scroll_up,
            "page_down": panel.scroll_page_down,
            "page_up": panel.scroll_page_up,
            "home": panel.scroll_home,
            "end": panel.scroll_end,
        }
        moves[where](animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
