"""Lists and tables that also move with j and k, as every list in the explorer does."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable, OptionList

VIM_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


class KeyTable(DataTable):
    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS


class KeyOptionList(OptionList):
    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS
