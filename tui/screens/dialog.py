"""The one dialog base: a centred box over the screen, Escape to close. Every dialog subclasses it
(a typed ``ModalScreen[T]``: the caller's callback gets the answer)."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.screen import ModalScreen

T = TypeVar("T")


class Dialog(ModalScreen[T]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel")]

    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical {
        width: 70;
        max-width: 95%;
        height: auto;
        border: thick $accent;
        background: $surface;
        padding: 1 2;
    }
    Dialog Label { width: 1fr; }
    Dialog .dialog-hint { color: $text-muted; }
    Dialog .dialog-hint.-refused { color: $error; text-style: bold; }
    """

    def action_cancel(self) -> None:
        """Closed without an answer: the caller gets None (a yes/no dialog: no)."""
        self.dismiss(None)
