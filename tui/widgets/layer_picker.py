"""The layer picker: one line per layer with a one-glance summary; computed layers are marked. While
a dictionary's features are listed, the layers without a dictionary are shown and cannot be chosen."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine.data.summary import LayerSummary
from tui.widgets.scrollbar import CellScrollBars
from tui.widgets.tables import VIM_KEYS

BARS = " ▁▂▃▄▅▆▇█"


def level_bar(value: float, top: float) -> str:
    """One cell for value on a scale up to top (the pickers share it)."""
    if top <= 0:
        return " "
    return BARS[int(round(min(value / top, 1.0) * (len(BARS) - 1)))]


class LayerPicker(CellScrollBars, OptionList):
    """Pick a layer with Enter or a click; ``]`` and ``[`` work from anywhere."""

    BINDINGS = [
        Binding("enter", "select", "Open the highlighted layer", show=False, id="open-layer"),
        # j and k move every table, this one too (listed once in the help, under every table).
        *(Binding(b.key, b.action, "", show=False) for b in VIM_KEYS if isinstance(b, Binding)),
    ]

    DEFAULT_CSS = """
    LayerPicker { width: 1fr; height: 1fr; border: none; padding: 0; scrollbar-size-vertical: 1; }
    LayerPicker:focus { border: none; }
    """

    class Chosen(Message):
        def __init__(self, layer: int) -> None:
            super().__init__()
            self.layer = layer

    def __init__(self, n_layers: int, **kwargs) -> None:
        super().__init__(
            *[
                Option(self._prompt(layer, None, 0.0, False, False), id=str(layer))
                for layer in range(n_layers)
            ],
            **kwargs,
        )
        self.n_layers = n_layers
        self.summaries: dict[int, LayerSummary] = {}
        self.current: int | None = None
        self.computing: int | None = None
        self.without: set[int] = set()  # layers without units of the kind listed (no dictionary)

    @staticmethod
    def _prompt(
        layer: int,
        summary: LayerSummary | None,
        top: float,
        current: bool,
        computing: bool,
        none: bool = False,
    ) -> Text:
        text = Text("▶" if current else " ", style="bold")
        text.append(f"L{layer:<3}", style="bold" if current else "")
        if none:
            text.append(" no dictionary", style="dim")
            return text
        if summary is None:
            text.append(
                " computing…" if computing else " pending", style="italic yellow" if computing else "dim"
            )
            return text
        text.append("✓", style="green")
        text.append(level_bar(summary.p99, top), style="cyan")
        text.append(f" μ{summary.mean:.2f}")
        if summary.n_standout:
            text.append(f" ★{summary.n_standout}", style="yellow")
        return text

    def _redraw(self, layer: int) -> None:
        top = max((s.p99 for s in self.summaries.values()), default=0.0)
        prompt = self._prompt(
            layer,
            self.summaries.get(layer),
            top,
            layer == self.current,
            layer == self.computing,
            layer in self.without,
        )
        self.replace_option_prompt_at_index(layer, prompt)

    def _redraw_all(self) -> None:
        for layer in range(self.n_layers):
            self._redraw(layer)

    def set_summary(self, summary: LayerSummary) -> None:
        rescale = summary.p99 > max((s.p99 for s in self.summaries.values()), default=0.0)
        self.summaries[summary.layer] = summary
        if rescale:
            self._redraw_all()
        else:
            self._redraw(summary.layer)

    def show_units(self, layers: list[int], summaries: dict[int, LayerSummary]) -> None:
        """Another kind of unit is listed: its ``layers`` (the others cannot be chosen) and the
        summaries known of it."""
        self.without = set(range(self.n_layers)) - set(layers)
        for layer in range(self.n_layers):
            if layer in self.without:
                self.disable_option_at_index(layer)
            else:
                self.enable_option_at_index(layer)
        self.summaries = dict(summaries)
        self._redraw_all()

    def clear_summaries(self) -> None:
        self.summaries.clear()
        self._redraw_all()

    def set_current(self, layer: int) -> None:
        previous, self.current = self.current, layer
        if previous is not None:
            self._redraw(previous)
        self._redraw(layer)
        self.highlighted = layer

    def set_computing(self, layer: int | None) -> None:
        previous, self.computing = self.computing, layer
        for index in {previous, layer}:
            if index is not None:
                self._redraw(index)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.Chosen(int(str(event.option.id))))
