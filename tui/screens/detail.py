"""One neuron in full: its statistics, the 50 tokens it promotes most and the 50 it suppresses most
(with token ids), and the histogram of its scores over the whole vocabulary. Right and left step
to the next and previous neuron in the list's order; A runs the corpus pass over its layer.

The histogram comes from the counts the scan stored, so it shows at once without the model. The scan
keeps top-k tokens per list (10 by default); the detail shows those at once, then all 50 from the
neuron's exact float64 score row, which a worker computes (loading the weights once).

Below 100 columns the plots move under the lists, side by side, so that each keeps its title and
axis labels; from 100 columns they stand beside the lists.

Keys mean what they mean in the list: h, g and a (the list's histogram, go-to and all-layers keys)
do nothing here rather than something else.

A dictionary's feature is shown the same way, with its dictionary and its closest neurons (and a
neuron, while a dictionary is open, with its closest features): 1-5 open one, in its own list
(``tui.screens.detail_units``). Ablation (x) reads neurons only: on a feature it says so."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from engine.data.dictionary import UnitNeighbours
from engine.data.evidence import EvidenceReading
from engine.data.firing import LayerFiring
from engine.data.inputs import LayerInputs
from engine.data.model import ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.results import LayerResult
from engine.data.tokens import Vocabulary
from engine.errors import describe
from tui.neuron_ref import NEURON_NAMES, UnitNames
from tui.screens.ablation import Ablate
from tui.screens.detail_evidence import evidence_view
from tui.screens.detail_pass import LayerPass, LayerPassWork
from tui.screens.detail_plots import draw_null_histogram, draw_score_histogram
from tui.screens.detail_tables import DETAIL_TOKENS, against_lists, promote_suppress_table, stats_table
from tui.screens.detail_units import CLOSEST_KEYS, Closest, closest_view
from tui.screens.mark_keys import MarkKeys, mark_bindings
from tui.screens.neuron_io import reads_writes_view
from tui.widgets.footer import KeyFooter, offered
from tui.widgets.scrollbar import CellScroll
from tui.widgets.title_bar import TitleBar


class NeuronDetailScreen(LayerPassWork, MarkKeys, Screen[tuple[int, int] | None]):
    """``score_row(neuron)`` computes a neuron's float64 scores against the whole vocabulary (slow:
    it may load the weights), so it runs in a worker. Dismissed with ``(layer, unit)``: one of its
    closest units of the other kind was chosen (the explorer switches kinds and opens it)."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="back"),
        Binding("right", "step(1)", "Next neuron", priority=True, id="next-neuron"),
        Binding("left", "step(-1)", "Prev neuron", priority=True, id="previous-neuron"),
        Binding("down,j", "scroll_tokens('down')", "Scroll down", show=False, id="detail-down"),
        Binding("up,k", "scroll_tokens('up')", "Scroll up", show=False, id="detail-up"),
        Binding("pagedown", "scroll_tokens('page_down')", "Page down", show=False, id="detail-page-down"),
        Binding("pageup", "scroll_tokens('page_up')", "Page up", show=False, id="detail-page-up"),
        Binding("home", "scroll_tokens('home')", "Top", show=False, id="detail-top"),
        Binding("end,G", "scroll_tokens('end')", "Bottom", show=False, id="detail-bottom"),
        Binding("A", "layer_pass", "Corpus pass", id="detail-corpus-pass"),
        Binding("t", "probe_neuron", "Probe", id="detail-probe"),
        Binding("x", "ablate", "Ablate", id="detail-ablate"),
        *mark_bindings("detail"),
        # The closest units of the other kind (a dictionary open): one row in the help for all five.
        Binding("1", "closest(0)", f"Open a closest neuron/feature (1-{CLOSEST_KEYS})", id="detail-closest"),
        *(Binding(str(rank + 1), f"closest({rank})", "", show=False) for rank in range(1, CLOSEST_KEYS)),
    ]

    # Classes set on the screen as it is resized (Textual applies them before the next layout).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    DEFAULT_CSS = """
    NeuronDetailScreen #detail-body { height: 1fr; }
    NeuronDetailScreen #detail-tokens { width: 64; height: 1fr; }
    NeuronDetailScreen #detail-plots { width: 1fr; padding-left: 1; }
    NeuronDetailScreen PlotextPlot { height: 1fr; }
    NeuronDetailScreen.-narrow #detail-body { layout: vertical; }
    NeuronDetailScreen.-narrow #detail-tokens { width: 1fr; }
    NeuronDetailScreen.-narrow #detail-plots { layout: horizontal; width: 1fr; height: 11; padding: 0; }
    NeuronDetailScreen.-narrow PlotextPlot { width: 1fr; height: 1fr; }
    NeuronDetailScreen #detail-activity { height: 1; padding: 0 1; background: $panel; display: none; }
    """

    class Moved(Message):
        """The detail now shows ``neuron``: the list's cursor follows it."""

        def __init__(self, neuron: int) -> None:
            super().__init__()
            self.neuron = neuron

    class InputsReady(Message):
        def __init__(self, inputs: LayerInputs) -> None:
            super().__init__()
            self.inputs = inputs

    class NeighboursReady(Message):
        def __init__(self, neighbours: UnitNeighbours | None, error: str | None = None) -> None:
            super().__init__()
            self.neighbours, self.error = neighbours, error

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
        ablate: Ablate | None = None,
        probed_text: str = "",
        names: UnitNames = NEURON_NAMES,
        closest: Closest | None = None,
        refusals: dict[str, str] | None = None,
        negative: bool = True,
    ) -> None:
        """``layer_inputs()`` computes the layer's input side (slow: it may read the weights), so it
        runs in a worker too; ``reading`` says how much of the corpus the evidence read;
        ``layer_pass`` runs the model over the corpus for this layer (A); ``probe_layer(text)``
        runs it on typed text (t); ``against``: another checkpoint's name and results of this layer
        (--against), whose lists are shown beside this model's; ``ablate`` ablates a neuron of this
        layer on text (x), the text probed last (``probed_text``) to start with; ``names``: how
        the units are named (neurons, or a dictionary's features); ``closest``: the other kind
        beside them (a dictionary open at this layer); ``refusals``: per action, why it cannot run
        for these units (one line); ``negative``: whether they can take negative values (a
        dictionary's features mostly cannot: no − pole is read for them)."""
        super().__init__()
        self.names, self.closest, self.refusals = names, closest, refusals or {}
        self.negative = negative
        self.neighbours: UnitNeighbours | None = None
        self.neighbours_error: str | None = None
        self.ablate, self.probed_text = ablate, probed_text
        self.against = against
        self.reading, self.layer_pass, self.probe_layer = reading, layer_pass, probe_layer
        self.info, self.neurons, self.vocab, self.score_row = info, neurons, vocab, score_row
        self.layer_inputs = layer_inputs
        self.inputs: LayerInputs | None = neurons.inputs
        self.order = order if neuron in order else [neuron]
        self.neuron = neuron
        self.scores: np.ndarray | None = None
        self.scores_settled = False
        self.histogram: tuple[np.ndarray, np.ndarray] | None = None  # the score plot's bins and counts

    @property
    def result(self) -> LayerResult:
        return self.neurons.result

    def compose(self) -> ComposeResult:
        yield TitleBar(id="detail-title")
        yield Static(id="detail-activity")
        with Horizontal(id="detail-body"):
            with CellScroll(id="detail-tokens"):
                yield Static(id="detail-stats")
                yield Static(id="detail-closest").set_styles(display="block" if self.closest else "none")
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
        if self.closest is not None:
            self.call_after_refresh(self.load_neighbours)

    # --- one neuron -------------------------------------------------------------------------
    def show_neuron(self, neuron: int) -> None:
        self.neuron = neuron
        self.scores, self.scores_settled = None, False
        stats = self.neurons.stats(neuron)
        self.query_one("#detail-title", TitleBar).fit(*self.title_variants())
        self.lists_table = promote_suppress_table(self.result, neuron, self.vocab)
        self.show_evidence()  # and the statistics, those of the corpus with it
        self._show_io()
        self.query_one("#detail-lists", Static).update(self.lists_table)
        self.against_text = Text()
        if self.against is not None:
            self.against_text = against_lists(*self.against, self.result, neuron, self.vocab)
        self.query_one("#detail-against", Static).update(self.against_text)
        self.query_one("#detail-tokens", CellScroll).scroll_home(animate=False)
        self.histogram = draw_score_histogram(self.query_one("#score-hist", PlotextPlot), self.result, neuron)
        if self.result.top_k < DETAIL_TOKENS:
            self.query_one("#detail-lists-note", Static).update(
                Text(f"finding {DETAIL_TOKENS} tokens each side…", style="dim")
            )
        # After the first frame: loading the weights holds the interpreter for seconds.
        self.call_after_refresh(self.load_scores, neuron)
        draw_null_histogram(self.query_one("#null-hist", PlotextPlot), self.neurons.null, stats.per_unit)

    def title_variants(self) -> list[str]:
        """The title, longest first. Where the screen is too narrow it gives way in this order:
        ``8 of 1536 listed`` becomes ``8/1536``, the layer's range goes (the unit's name says its
        layer), then the model's name, then the position; the unit's name is cut last."""
        unit, layer = self.names.full(self.result.layer, self.neuron), self.result.layer
        position, count = self.order.index(self.neuron) + 1, len(self.order)
        depth = f"layer {layer} of 0-{self.info.n_layers - 1}"
        return [
            f"{unit} · {self.info.name} · {depth} · {position} of {count} listed",
            f"{unit} · {self.info.name} · {depth} · {position}/{count}",
            f"{unit} · {self.info.name} · {position}/{count}",
            f"{unit} · {position}/{count}",
            unit,
        ]

    def _stat_pairs(self) -> int:
        """Two name-value columns of statistics where the panel spans the screen (below 100
        columns), one beside the plots."""
        return 2 if self.size.width < 100 else 1

    def _show_stats(self) -> None:
        self.shown_pairs = self._stat_pairs()
        self.stats_table = stats_table(self.neurons, self.neurons.stats(self.neuron), self.shown_pairs)
        self.query_one("#detail-stats", Static).update(self.stats_table)

    def on_resize(self) -> None:
        if self.is_mounted and getattr(self, "shown_pairs", None) not in (None, self._stat_pairs()):
            self._show_stats()

    def show_evidence(self) -> None:
        self._show_stats()  # the corpus's columns (lift, density, attribution) come with the evidence
        evidence, reading, negative = self.neurons.evidence, self.reading, self.negative
        self.evidence_text = evidence_view(evidence, self.neuron, self.vocab, reading, negative)
        self.query_one("#detail-evidence", Static).update(self.evidence_text)
        self._show_closest()  # a feature's dictionary over the corpus, once a pass has read it

    def marking_target(self) -> tuple[int, int] | None:
        return self.result.layer, self.neuron

    def action_probe_neuron(self) -> None:
        """Type text and see this neuron's activation on every token."""
        from tui.screens.neuron_probe import NeuronProbeScreen, NeuronTokens

        if self.probe_layer is None:
            return
        r, n = self.result, self.neuron
        tokens = NeuronTokens(int(r.promote_ids[n, 0]), int(r.suppress_ids[n, 0]))
        probe = NeuronProbeScreen(r.layer, n, self.vocab, self.probe_layer, tokens, names=self.names)
        self.app.push_screen(probe)

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """The footer's keys in the words of the unit shown, ablation (x) left out where it only
        says it reads neurons (the key still says so)."""
        word = self.names.word
        described = {"next-neuron": f"Next {word}", "previous-neuron": f"Prev {word}"}
        refused = [f"detail-{action}" for action in self.refusals]
        return offered(super().active_bindings, described, refused)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "ablate":  # not offered where it cannot run: a layer of experts
            return self.result.experts is None
        if action == "closest":  # only with a dictionary at this layer
            return self.closest is not None
        return True

    def action_ablate(self) -> None:
        """This neuron set to 0 at each token of a text in turn: the predicted token's logit change."""
        from tui.screens.ablation import AblationScreen

        if "ablate" in self.refusals:
            self.notify(self.refusals["ablate"], title="ablation", severity="warning")
            return
        if self.result.experts is not None:
            self.notify("ablation reads dense MLP layers only so far: this layer routes through experts")
            return
        if self.ablate is not None:
            screen = AblationScreen(self.result.layer, self.neuron, self.vocab, self.ablate, self.probed_text)
            self.app.push_screen(screen)

    def action_step(self, delta: int) -> None:
        position = self.order.index(self.neuron) + delta
        if 0 <= position < len(self.order):
            self.show_neuron(self.order[position])
            self.post_message(self.Moved(self.neuron))

    def _show_io(self) -> None:
        if self.layer_inputs is None and self.inputs is None:  # a feature's encoder is not a neuron's
            self.io_text = Text()
        else:
            self.io_text = reads_writes_view(self.inputs, self.result, self.neuron, self.vocab)
        self.query_one("#detail-io", Static).update(self.io_text)

    # --- the other kind beside it -------------------------------------------------------------
    def _show_closest(self) -> None:
        self.closest_text = Text()
        if self.closest is not None:
            self.closest_text = closest_view(
                self.closest,
                self.neighbours,
                self.result.layer,
                self.neuron,
                self.neurons.evidence,
                self.neighbours_error,
            )
        self.query_one("#detail-closest", Static).update(self.closest_text)

    @work(thread=True, exclusive=True, group="neighbours", exit_on_error=False)
    def load_neighbours(self) -> None:
        assert self.closest is not None
        self.post_message(self.NeighboursReady(self.closest.find()))

    def on_neuron_detail_screen_neighbours_ready(self, message: NeighboursReady) -> None:
        self.neighbours, self.neighbours_error = message.neighbours, message.error
        self._show_closest()

    def action_closest(self, rank: int) -> None:
        """Open the ``rank``-th closest unit of the other kind in its own list."""
        if self.closest is None:
            self.notify("no dictionary reads this layer: nothing to set beside it", severity="warning")
            return
        if self.neighbours is None:
            return  # still reading the weights; the line says so
        found = self.neighbours.of(self.neuron)
        if rank < len(found):
            self.dismiss((self.result.layer, found[rank][0]))

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
        if event.state == WorkerState.ERROR and event.worker.group == "neighbours":
            error = describe(event.worker.error) if event.worker.error is not None else "failed"
            self.post_message(self.NeighboursReady(None, error))
            return
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
        self.lists_table = promote_suppress_table(self.result, self.neuron, self.vocab, message.scores)
        self.query_one("#detail-lists", Static).update(self.lists_table)
        self.query_one("#detail-lists-note", Static).update("")

    def action_scroll_tokens(self, where: str) -> None:
        """The statistics, token lists and examples scroll with the list keys (j/k, Home/End)."""
        panel = self.query_one("#detail-tokens", CellScroll)
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
