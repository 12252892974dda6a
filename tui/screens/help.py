"""Help generated from the real key bindings of the app and its widgets."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.widgets.scrollbar import CellScroll

# Keys as a user types them (Textual names some by their character's name).
TYPED = {
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "left_curly_bracket": "{",
    "right_curly_bracket": "}",
    "slash": "/",
    "question_mark": "?",
    "escape": "esc",
    "pagedown": "page down",
    "pageup": "page up",
    "plus": "+",
    "minus": "-",
}


def typed(key: str) -> str:
    return TYPED.get(key, key)


def bindings_table(groups: list[tuple[str, list[Binding]]]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("does")
    table.add_column("where", style="dim")
    seen: set[tuple[str, str]] = set()
    for where, bindings in groups:
        for binding in bindings:
            if not binding.description or (binding.key, binding.description) in seen:
                continue
            seen.add((binding.key, binding.description))
            keys = ", ".join(typed(key) for key in binding.key.split(","))
            table.add_row(keys, binding.description, where)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close help", id="close-help")]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > CellScroll {
        width: 80;
        max-width: 95%;
        height: 80%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    def __init__(self, groups: list[tuple[str, list[Binding]]], intro: str) -> None:
        super().__init__()
        self.groups, self.intro = groups, intro

    def compose(self) -> ComposeResult:
        with CellScroll():
            yield Static(self.intro, markup=False)
            yield Static(bindings_table(self.groups))
