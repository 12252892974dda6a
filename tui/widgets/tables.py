"""Lists and tables that also move with j and k, as every list in the explorer does, with scroll
bars in whole cells (tui.widgets.scrollbar). In a table Home and End go to its first and last row,
as in the neuron list (Textual's table scrolls sideways with them)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable, OptionList

from tui.widgets.scrollbar import CellScrollBars

VIM_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


ROW_KEYS: list[BindingType] = [
    Binding("home", "scroll_top", "First row", show=False),
    Binding("end", "scroll_bottom", "Last row", show=False),
]


class KeyTable(CellScrollBars, DataTable):
    BINDINGS: ClassVar[list[BindingType]] = [*VIM_KEYS, *ROW_KEYS]
    DEFAULT_CSS = "KeyTable { scrollbar-size-vertical: 1; }"


class KeyOptionList(CellScrollBars, OptionList):
    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS
    DEFAULT_CSS = "KeyOptionList { scrollbar-size-vertical: 1; }"
