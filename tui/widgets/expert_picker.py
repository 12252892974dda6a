"""The expert picker of a layer of experts: "all", then each expert with a one-glance bar of its
max-dot (99th percentile, on the layer's scale) and, once a corpus pass has measured it, the share
of positions routed to it. ``}`` and ``{`` move between experts from anywhere, as ``]`` and ``[``
between layers."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine.data.experts import ExpertLabel, LayerExperts
from engine.data.results import LayerResult
from tui.widgets.layer_picker import level_bar
from tui.widgets.scrollbar import CellScrollBars
from tui.widgets.tables import VIM_KEYS

ALL = "all"


class ExpertPicker(CellScrollBars, OptionList):
    BINDINGS = [
        Binding("enter", "select", "Open the highlighted expert", show=False, id="open-expert"),
        *(Binding(b.key, b.action, "", show=False) for b in VIM_KEYS if isinstance(b, Binding)),
    ]

    DEFAULT_CSS = """
    ExpertPicker { width: 1fr; height: 1fr; border: none; padding: 0; scrollbar-size-vertical: 1; }
    ExpertPicker:focus { border: none; }
    """

    class Chosen(Message):
        """An expert (None: all of the layer's) picked with Enter or a click."""

        def __init__(self, expert: ExpertLabel | None) -> None:
            super().__init__()
            self.expert = expert

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown_layer: int | None = None
        self.experts: LayerExperts | None = None

    def show_layer(
        self,
        result: LayerResult,
        chosen: ExpertLabel | None,
        routed: dict[ExpertLabel, float] | None = None,
    ) -> None:
        """List ``result``'s experts, ``chosen`` (None: all) highlighted; ``routed``: each
        expert's share of routed positions, when measured."""
        experts = result.experts
        assert experts is not None
        p99 = {g.expert: float(np.percentile(result.max_dot[g.start : g.stop], 99)) for g in experts.groups}
        top = max(p99.values(), default=0.0)
        shared = " + S" if experts.n_routed < len(experts.groups) else ""
        everything = Text("▶" if chosen is None else " ", style="bold")
        everything.append(f"all {experts.n_routed} experts{shared}", style="bold")
        options = [Option(everything, id=ALL)]
        for group in experts.groups:
            text = Text("▶" if group.expert == chosen else " ", style="bold")
            text.append(f"{group.label:<5}", style="bold" if group.expert == chosen else "")
            text.append(level_bar(p99[group.expert], top), style="cyan")
            text.append(f" {p99[group.expert]:.2f}")
            if routed is not None and group.expert in routed:
                text.append(f" {100 * routed[group.expert]:4.1f}%", style="yellow")
            options.append(Option(text, id=str(group.expert)))
        self.shown_layer, self.experts = result.layer, experts
        self.clear_options()
        self.add_options(options)
        index = 0 if chosen is None else 1 + [g.expert for g in experts.groups].index(chosen)
        self.highlighted = index

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        picked = str(event.option.id)
        if picked == ALL or self.experts is None:
            self.post_message(self.Chosen(None))
            return
        label = next(g.expert for g in self.experts.groups if str(g.expert) == picked)
        self.post_message(self.Chosen(label))
