"""Before a corpus pass starts: which layers (the one on screen, or all) and how many tokens to
read, with the device's default said. Enter starts, Escape cancels; the answer is a PassChoice."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from tui.screens.dialog import Dialog


@dataclass(frozen=True)
class PassChoice:
    all_layers: bool
    cap: int | None  # None: the whole corpus


def parse_cap(text: str) -> int | None:
    """'all' or nothing: the whole corpus; else a whole number of tokens (1,000 and 1_000 too)."""
    cleaned = text.strip().lower().replace(",", "").replace("_", "")
    if cleaned in ("", "all"):
        return None
    if not cleaned.isdigit() or int(cleaned) < 1:
        raise ValueError(f"the token cap is a whole number of tokens, or all: got {text.strip()!r}")
    return int(cleaned)


class PassDialog(Dialog[PassChoice | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel-pass"),
        Binding("enter", "start", "Start", priority=True, id="start-pass"),  # from any field
        Binding("up,down", "toggle_layers", "This layer / all layers", id="pass-layers"),
    ]

    def __init__(self, layer: int, n_layers: int, default_cap: int | None, device_words: str) -> None:
        super().__init__()
        self.shown_layer, self.n_layers = layer, n_layers
        self.default_cap, self.device_words = default_cap, device_words
        self.all_layers = False

    def compose(self) -> ComposeResult:
        shown = "all" if self.default_cap is None else f"{self.default_cap:,}"
        with Vertical():
            yield Label("Run the model over the corpus", id="pass-title", markup=False)
            yield Static(self._layers_text(), id="pass-layers")
            yield Label("tokens to read (a number, or all):", markup=False)
            yield Input(value=shown, id="pass-cap")
            default = "the whole corpus" if self.default_cap is None else f"{shown} tokens"
            yield Label(
                f"default on {self.device_words}: {default}. Up/down choose the layers. Evidence shows as "
                "it is read; A again stops (what was read is kept) and a later pass resumes. Enter "
                "starts, Escape cancels.",
                classes="dialog-hint",
                markup=False,
            )
            yield Label("", id="pass-error", markup=False)

    def _layers_text(self) -> Text:
        # (•) and ( ): the choice reads without colour.
        text = Text()
        for chosen, words in (
            (not self.all_layers, f"this layer (L{self.shown_layer}): its pass stops after it"),
            (self.all_layers, f"all {self.n_layers} layers"),
        ):
            text.append(f"{'(•)' if chosen else '( )'} {words}\n", style="bold" if chosen else "")
        return text

    def action_toggle_layers(self) -> None:
        self.all_layers = not self.all_layers
        self.query_one("#pass-layers", Static).update(self._layers_text())

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_start(self) -> None:
        try:
            cap = parse_cap(self.query_one(Input).value)
        except ValueError as error:
            self.query_one("#pass-error", Label).update(str(error))
            return
        self.dismiss(PassChoice(self.all_layers, cap))
