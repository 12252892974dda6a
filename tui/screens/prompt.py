"""A one-field dialog that returns the typed text (or None when dismissed)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from tui.screens.dialog import Dialog


class PromptScreen(Dialog[str | None]):
    """Ask for one value: Enter confirms, Escape cancels."""

    def __init__(self, title: str, value: str, hint: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.hint, self.placeholder = title, value, hint, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="prompt-title", markup=False)
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label(self.hint, id="prompt-hint", classes="dialog-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)
