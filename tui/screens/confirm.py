"""A yes/no dialog: Enter confirms, Escape declines (the keys its hint names; n is the note key
everywhere else, so it is not "no" here)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label

from tui.screens.dialog import Dialog


class ConfirmScreen(Dialog[bool]):
    """Ask before doing something that cannot be taken back (overwriting a file)."""

    BINDINGS = [
        Binding("enter", "confirm", "Yes", id="confirm-yes"),
        Binding("escape", "decline", "No", id="confirm-no"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen > Vertical { border: thick $warning; }
    """

    def __init__(self, question: str, hint: str) -> None:
        super().__init__()
        self.question, self.hint = question, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="confirm-question", markup=False)
            yield Label(self.hint, id="confirm-hint", classes="dialog-hint", markup=False)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)
