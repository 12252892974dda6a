"""The neuron list's sort, reverse, filter and go-to, and the histogram's two keys.

A part of ``MainScreen`` (a mixin on ``MainParts``); its methods run as the screen's own.
"""

from __future__ import annotations

from tui.filtering import FilterError, parse_filter
from tui.neuron_ref import NeuronRefError, parse_neuron_ref
from tui.screens.main_parts import MainParts
from tui.screens.prompt import PromptScreen
from tui.widgets.histogram import MaxDotHistogram


class ListActions(MainParts):
    def action_cycle_sort(self) -> None:
        self.state.cycle_sort()
        self._resort()

    def action_reverse_sort(self) -> None:
        self.state.reverse_sort()
        self._resort()

    def _resort(self) -> None:
        if self.result is not None:
            self._show_result(self.result, from_top=True)
        self.refresh_status()

    def action_filter(self) -> None:
        current = ", ".join(map(str, self.state.conditions))
        hint = "a number = minimum max-dot; or e.g. kurtosis>10, null_z>3, class=prediction; empty clears"
        self.app.push_screen(PromptScreen("Filter neurons", current, hint, "0.5"), self._apply_filter)

    def _apply_filter(self, text: str | None) -> None:
        if text is None:
            return
        try:
            self.state.conditions = parse_filter(text)
        except FilterError as error:
            self.notify(str(error), title="filter not applied", severity="error")
            return
        if self.result is not None:
            self._show_result(self.result, from_top=True)
        self.refresh_status()

    def action_go_to(self) -> None:
        if self.info is None:
            return
        hint = "L29/N1135, 29:1135, 29/1135, or a neuron of this layer: 1135"
        self.app.push_screen(PromptScreen("Go to neuron", "", hint, "L29/N1135"), self._go_to)

    def _go_to(self, text: str | None) -> None:
        if not text or self.info is None:
            return
        try:
            target = parse_neuron_ref(text, self.state.layer, self.info.n_layers, self.info.d_mlp)
        except NeuronRefError as error:
            self.notify(str(error), title="go to", severity="error")
            return
        self.jump_to_neuron(target)

    def action_toggle_histogram(self) -> None:
        self.query_one(MaxDotHistogram).toggle_mode()

    def action_grow_histogram(self) -> None:
        self.toggle_class("-tall-histogram")
