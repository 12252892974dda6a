"""The layer on screen: the layer picker, the layer's max-dot histogram and its neuron list.

The pane owns how a layer is shown (its sort, filter and go-to keys, the histogram's keys), reads a
layer off the cache in its own worker, and fetches the other checkpoint's diff of the layer when
one is compared. It tells the screen above what it shows by ``LayerView.Shown``.
"""

from __future__ import annotations

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static
from textual.worker import Worker

from engine.data.neurons import LayerNeurons
from engine.data.results import LayerResult
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.filtering import FilterError, parse_filter
from tui.messages import DiffReady, LayerMissing, LayerReady, report_failure
from tui.neuron_ref import NeuronRefError, parse_unit_ref
from tui.screens.prompt import PromptScreen
from tui.state import ExplorerState
from tui.widgets.expert_picker import ExpertPicker
from tui.widgets.histogram import MaxDotHistogram
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.neuron_list import NeuronList
from tui.widgets.title_bar import TitleBar

FILTER_HINT = "a number = minimum max-dot; or e.g. kurtosis>10, null_z>3, class=prediction; empty clears"
GO_TO_HINT = "L29/N1135, 29:1135, 29/1135, or a neuron of this layer: 1135 (experts: L12/E5/N301, E5/N301)"
FEATURE_HINT = "L29/F812, 29/F812, or a feature of this layer: F812 or 812 (a neuron: L29/N1135)"


class LayerView(Horizontal):
    BINDINGS = [
        # The app's layer keys, repeated here so that the footer shows them first.
        Binding("right_square_bracket", "app.next_layer", "Next layer", key_display="]"),
        Binding("left_square_bracket", "app.previous_layer", "Prev layer", key_display="["),
        # In a layer of experts (shown only there): the next and previous expert, "all" first.
        Binding("right_curly_bracket", "next_expert", "Next expert", key_display="}", id="next-expert"),
        Binding("left_curly_bracket", "previous_expert", "Prev expert", key_display="{", id="prev-expert"),
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("r", "reverse_sort", "Reverse", id="reverse"),
        Binding("f", "filter", "Filter", id="filter"),
        Binding("g", "go_to", "Go to", id="go-to"),
        Binding("h", "toggle_histogram", "Hist/curve", id="histogram"),
        Binding("H", "grow_histogram", "Taller histogram", show=False, id="grow-histogram"),
    ]

    class UnitsWanted(Message):
        """A go-to named a unit of the other kind (``target``: its layer and id)."""

        def __init__(self, target: tuple[int, int], detail: bool = False) -> None:
            super().__init__()
            self.target, self.detail = target, detail

    class Shown(Message):
        """``neurons`` are on screen now (a new layer, order, filter or evidence)."""

        def __init__(self, neurons: LayerNeurons) -> None:
            super().__init__()
            self.neurons = neurons

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(self, event)  # up to the screen, which says so

    def __init__(self, engine: NeuronEngine, state: ExplorerState, against: NeuronEngine | None) -> None:
        super().__init__(id="layer-view")
        self.engine, self.state, self.against = engine, state, against
        self.neurons: LayerNeurons | None = None  # the layer on screen, derived for display

    @property
    def result(self) -> LayerResult | None:
        return self.neurons.result if self.neurons is not None else None

    @property
    def listing(self) -> NeuronList:
        return self.query_one(NeuronList)

    def compose(self) -> ComposeResult:
        with Vertical(id="left"):
            yield TitleBar("Layers", id="left-title")
            yield Static("loading model…", id="loading-note")
        with Vertical(id="right"):
            yield MaxDotHistogram(id="histogram")
            yield NeuronList(id="neurons")

    def begin(self, n_layers: int, with_experts: bool = False) -> None:
        """The model's shapes are known: the picker replaces the loading note (and, in a model of
        experts, an expert picker sits under it, shown for the layers of experts)."""
        self.query_one("#loading-note").remove()
        left = self.query_one("#left", Vertical)
        picker = LayerPicker(n_layers, id="picker")
        left.mount(picker)
        if self.state.features:  # started on a dictionary's features: its layers only
            picker.show_units(self.state.unit_layers(), {})
        if with_experts:
            experts = ExpertPicker(id="expert-picker")
            experts.display = False
            left.mount(TitleBar("Experts  } and {", id="experts-title"), experts)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("next_expert", "previous_expert"):
            return self.result is not None and self.result.experts is not None
        return True

    @property
    def picker(self) -> LayerPicker | None:
        found = self.query(LayerPicker)
        return found.first() if found else None

    def switch_units(self) -> None:
        """The other kind of unit is shown from now on: nothing of the old one stays on screen, and
        the picker shows the new kind's summaries (and, for features, which layers have them)."""
        self.neurons = None
        self.listing.clear(f"reading the {self.state.unit_word}…")
        picker = self.picker
        if picker is not None:
            picker.show_units(self.state.unit_layers(), self.state.summaries)

    def highlighted(self) -> tuple[int, int] | None:
        """(layer, neuron) under the cursor, or None while no layer is shown."""
        neuron = self.listing.current_neuron
        return None if neuron is None or self.result is None else (self.result.layer, neuron)

    # --- which layer ------------------------------------------------------------------------
    def show_layer(self, layer: int) -> None:
        result = self.state.show(layer)
        if self.picker is not None:
            self.picker.set_current(layer)
        if result is not None:
            self.show_result(result)
            return
        self.neurons = None
        self.listing.to_top()
        self.listing.clear(f"layer {layer}: reading the cache or computing…")
        self.query_one(MaxDotHistogram).show(None, f"layer {layer}: waiting for results")
        self.fetch_cached(layer, self.state.settings, self.state.generation)

    def step(self, delta: int) -> None:
        target = self.state.step(delta)
        if target is not None:
            self.show_layer(target)

    def jump_to(self, target: tuple[int, int] | None, detail: bool = False) -> None:
        """Open ``(layer, neuron)`` with the cursor on that neuron (neuron -1: just the layer);
        ``detail``: and open its detail once it is listed."""
        if target is None:
            return
        layer, neuron = target
        self.state.jump_to(neuron if neuron >= 0 else None)
        self.state.pending_detail = detail and neuron >= 0
        self.show_layer(layer)

    @work(thread=True, exclusive=True, group="fetch", exit_on_error=False)
    def fetch_cached(self, layer: int, settings: ScanSettings, generation: int) -> None:
        """A cached layer off the disk without waiting for the background scan."""
        result = self.engine.cached_layer(layer, settings)
        self.post_message(LayerReady(result, generation) if result is not None else LayerMissing(layer))

    @work(thread=True, exclusive=True, group="fetch", exit_on_error=False)
    def compute(self, layer: int, settings: ScanSettings, generation: int) -> None:
        """A layer neither cached nor still ahead of the background scan (which keeps only the
        layer on screen: without a cache, one it passed is gone): computed here."""
        result = self.engine.layer(layer, settings)
        self.post_message(LayerReady(result, generation))

    def on_layer_ready(self, message: LayerReady) -> None:
        message.stop()
        self.landed(message)

    def landed(self, message: LayerReady) -> None:
        """A layer's results arrived (from the cache here, or from the background scan)."""
        if message.generation != self.state.generation:
            return
        result = message.result
        self.state.keep(result)
        if result.layer == self.state.layer and (self.result is None or self.result.layer != result.layer):
            self.show_result(result)

    # --- showing it -------------------------------------------------------------------------
    def redraw(self) -> None:
        """The same layer again (its evidence, diff, null baseline or marks changed)."""
        if self.result is not None:
            self.show_result(self.result)

    def show_result(
        self, result: LayerResult, from_top: bool = False, keep_neuron: int | None = None
    ) -> None:
        state = self.state
        assert state.vocab is not None
        self.neurons = neurons = state.neurons(result)
        order = self._order(neurons)
        listing = self.listing
        listing.show_layer(neurons, state.vocab, order, state.marked)
        if keep_neuron is not None and keep_neuron in order:
            listing.set_order(order, keep_neuron=keep_neuron)
        elif from_top or keep_neuron is not None:
            listing.to_top()
        if state.pending_neuron is not None:
            listing.set_order(order, keep_neuron=state.pending_neuron)
            state.pending_neuron = None
            if state.pending_detail:
                state.pending_detail = False
                # As Enter on its row would; posted here, not by the list: a message posted while
                # this view handles one counts this view as its sender, and the list's bubbling
                # stops at its sender, below the screen that opens the detail.
                self.post_message(NeuronList.Selected(listing.current_neuron))
        self._draw_histogram(result, order)
        self._show_experts(result)
        self.post_message(self.Shown(neurons))
        if self.against is not None and not state.features and result.layer not in state.diffs:
            self.fetch_diff(result.layer, state.generation)

    def _show_experts(self, result: LayerResult) -> None:
        """The expert picker for a layer of experts (hidden for a dense layer)."""
        found = self.query(ExpertPicker)
        if not found:
            return
        picker, title = found.first(), self.query_one("#experts-title")
        picker.display = title.display = result.experts is not None
        self.refresh_bindings()  # } and { are shown for a layer of experts only
        if result.experts is not None:
            group = self.state.expert_group(result)
            evidence = self.state.evidence.get(result.layer)
            routed = None
            if evidence is not None and evidence.routed is not None:  # from the corpus pass
                routed = {g.expert: float(evidence.routed[g.start]) for g in result.experts.groups}
            picker.show_layer(result, None if group is None else group.expert, routed)

    def _order(self, neurons: LayerNeurons) -> np.ndarray:
        """The listed order; a neuron asked for by go-to that the filter hides clears the filter
        (and one of another expert than the one listed lists its expert)."""
        state = self.state
        experts = neurons.result.experts
        if state.pending_neuron is not None and experts is not None and state.expert is not None:
            state.expert = experts.locate(state.pending_neuron)[0]
        order = state.order(neurons)
        if state.pending_neuron is not None and state.conditions and state.pending_neuron not in order:
            hidden = ", ".join(map(str, state.conditions))
            state.conditions = []
            order = state.order(neurons)
            self.notify(
                f"{state.unit_label(neurons.layer, state.pending_neuron)} does not pass the filter {hidden}: "
                "the filter was cleared to show it",
                title="go to",
            )
        return order

    def _draw_histogram(self, result: LayerResult, order: np.ndarray) -> None:
        null_values = None
        if self.state.null is not None:
            # Null max-dots per unit norm, scaled by the layer's median norm to sit on the same axis.
            scale = 1.0 if self.state.settings.projection.cosine else float(np.median(result.norm))
            null_values = self.state.null.values * scale
        group = self.state.expert_group(result)
        whole = result.d_mlp if group is None else group.size
        shown = f"{len(order)} of {whole}" if len(order) != whole else f"{whole}"
        values = result.max_dot[order] if len(order) else result.max_dot
        where = f"layer {result.layer}" if group is None else f"layer {result.layer} {group.label}"
        histogram = self.query_one(MaxDotHistogram)
        word = self.state.unit_word
        histogram.show(values, f"{where}: max-dot of {shown} {word}", null_values, word)
        self._mark_histogram(self.listing.current_neuron)

    def _mark_histogram(self, neuron: int | None) -> None:
        if self.result is not None and neuron is not None:
            self.query_one(MaxDotHistogram).set_marker(float(self.result.max_dot[neuron]))

    def refresh_marks(self) -> None:
        self.listing.marked = self.state.marked
        self.listing.refresh()

    def follow(self, neuron: int) -> None:
        """The detail stepped to another neuron: the cursor follows."""
        self.listing.set_order(self.listing.order, keep_neuron=neuron)

    def on_neuron_list_highlighted(self, message: NeuronList.Highlighted) -> None:
        self._mark_histogram(message.neuron)

    def on_layer_picker_chosen(self, message: LayerPicker.Chosen) -> None:
        self.show_layer(message.layer)
        self.listing.focus()

    # --- experts ----------------------------------------------------------------------------
    def on_expert_picker_chosen(self, message: ExpertPicker.Chosen) -> None:
        self.state.expert = message.expert
        if self.result is not None:
            self.show_result(self.result, from_top=True)
        self.listing.focus()

    def action_next_expert(self) -> None:
        self._step_expert(1)

    def action_previous_expert(self) -> None:
        self._step_expert(-1)

    def _step_expert(self, delta: int) -> None:
        if self.result is not None and self.state.step_expert(self.result, delta):
            self.show_result(self.result, from_top=True)

    # --- the other checkpoint (--against) ---------------------------------------------------
    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def fetch_diff(self, layer: int, generation: int) -> None:
        """The layer against the other checkpoint: from the cache, or both scans (each model's
        cache first) and both weights."""
        assert self.against is not None
        settings = self.state.settings
        try:
            lens_file = self.engine.lens_file(settings.lens)
            if lens_file is not None:  # the other model is read through the same lens
                self.against.open_lens(f"jacobian:{lens_file.path}")
            diff = self.engine.diff(layer, self.against, settings)
            other = self.against.layer(layer, settings)
        except UserError as error:
            self.app.call_from_thread(self.notify, f"diff: {error}", severity="error")
            return
        self.post_message(DiffReady(diff, other, generation))

    def on_diff_ready(self, message: DiffReady) -> None:
        message.stop()
        if message.generation != self.state.generation:
            return
        self.state.keep_diff(message.diff, message.other)
        if self.result is not None and self.result.layer == message.diff.layer:
            self.redraw()

    # --- keys -------------------------------------------------------------------------------
    def action_cycle_sort(self) -> None:
        self.state.cycle_sort(self.neurons)
        self._resort()

    def action_reverse_sort(self) -> None:
        self.state.reverse_sort()
        self._resort()

    def _resort(self) -> None:
        if self.result is not None:
            self.show_result(self.result, from_top=True)

    def action_filter(self) -> None:
        current = ", ".join(map(str, self.state.conditions))
        prompt = PromptScreen("Filter neurons", current, FILTER_HINT, "0.5", check=_filter_refusal)
        self.app.push_screen(prompt, self._apply_filter)

    def _apply_filter(self, text: str | None) -> None:
        if text is None:
            return
        try:
            self.state.conditions = parse_filter(text)
        except FilterError as error:
            self.notify(str(error), title="filter not applied", severity="error")
            return
        if self.result is not None:  # the cursor stays on its neuron where that one still passes
            self.show_result(self.result, keep_neuron=self.listing.current_neuron)

    def action_go_to(self) -> None:
        if self.state.info is not None:
            title, hint = (
                ("Go to feature", FEATURE_HINT) if self.state.features else ("Go to neuron", GO_TO_HINT)
            )
            self.app.push_screen(PromptScreen(title, "", hint, self._example_ref()), self._go_to)

    def _example_ref(self) -> str:
        """The dialog's placeholder: a unit of this model (of the layer on screen)."""
        result = self.result
        if result is None:
            return "L0/N0"
        if self.state.features:
            return f"L{result.layer}/F0"
        experts = result.experts
        return f"L{result.layer}/N0" if experts is None else f"L{result.layer}/{experts.groups[0].label}/N0"

    def _go_to(self, text: str | None) -> None:
        info = self.state.info
        if not text or info is None:
            return
        state = self.state
        try:
            layer, unit, feature = parse_unit_ref(
                text,
                state.layer,
                info.n_layers,
                info.d_mlp,
                state.dictionary_infos,
                state.features,
                state.expert,
            )
        except NeuronRefError as error:
            self.notify(str(error), title="go to", severity="error")
            return
        if feature != state.features:  # the other kind: the screen switches, then goes there
            self.post_message(self.UnitsWanted((layer, unit)))
            return
        self.jump_to((layer, unit))

    def action_toggle_histogram(self) -> None:
        self.query_one(MaxDotHistogram).toggle_mode()

    def action_grow_histogram(self) -> None:
        self.toggle_class("-tall-histogram")


def _filter_refusal(text: str) -> str | None:
    """Why the filter dialog cannot apply ``text`` (None: it can)."""
    try:
        parse_filter(text)
    except FilterError as error:
        return str(error)
    return None
