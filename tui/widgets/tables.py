"""Lists and tables that also move with j and k, as every list in the explorer does."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable, OptionList

VIM_KEYS = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


class KeyTable(DataTable):
    BINDINGS = VIM_KEYS


class KeyOptionList(OptionList):
    BINDINGS = VIM_KEYS
