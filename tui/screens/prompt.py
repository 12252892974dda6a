"""A one-field dialog that returns the typed text (or None when dismissed)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from tui.screens.dialog import Dialog


class PromptScreen(Dialog[str | None]):
    """Ask for one value: Enter confirms, Escape cancels. ``check`` (text -> why it cannot be used,
    or None) keeps the dialog open on a refusal, the reason in place of the hint, the text kept to
    be corrected rather than typed again."""

    def __init__(
        self,
        title: str,
        value: str,
        hint: str = "",
        placeholder: str = "",
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text, self.value, self.hint, self.placeholder = title, value, hint, placeholder
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="prompt-title", markup=False)
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label(self.hint, id="prompt-hint", classes="dialog-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        refusal = self.check(event.value) if self.check is not None else None
        hint = self.query_one("#prompt-hint", Label)
        if refusal:
            hint.update(f"✗ {refusal}")
            hint.add_class("-refused")
            return
        self.dismiss(event.value)
