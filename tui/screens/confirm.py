"""A yes/no dialog: Enter confirms, Escape (or n) declines."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class ConfirmScreen(ModalScreen[bool]):
    """Ask before doing something that cannot be taken back (overwriting a file)."""

    BINDINGS = [
        Binding("enter,y", "confirm", "Yes", id="confirm-yes"),
        Binding("escape,n", "decline", "No", id="confirm-no"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 70;
        max-width: 95%;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    ConfirmScreen Label { width: 1fr; }
    ConfirmScreen #confirm-hint { color: $text-muted; }
    """

    def __init__(self, question: str, hint: str) -> None:
        super().__init__()
        self.question, self.hint = question, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="confirm-question", markup=False)
            yield Label(self.hint, id="confirm-hint", markup=False)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)
