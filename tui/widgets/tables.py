"""Lists and tables that also move with j and k, as every list in the explorer does, with scroll
bars in whole cells (tui.widgets.scrollbar)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable, OptionList

from tui.widgets.scrollbar import CellScrollBars

VIM_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


class KeyTable(CellScrollBars, DataTable):
    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS
    DEFAULT_CSS = "KeyTable { scrollbar-size-vertical: 1; }"


class KeyOptionList(CellScrollBars, OptionList):
    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS
    DEFAULT_CSS = "KeyOptionList { scrollbar-size-vertical: 1; }"
