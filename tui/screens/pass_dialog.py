"""Before a corpus pass starts: which layers (the one on screen, or all), how many tokens to read
(with the device's default said), and which corpus: the explorer's own, a built-in one by name, or
a file, a folder or hf:NAME typed in (what --corpus takes). Enter starts, Escape cancels; the answer
is a PassChoice.

Keys: up/down choose the layers while the token cap has the focus (as the dialog opens); Tab moves
to the corpus, where up/down choose it and typing a path chooses "a file". Every choice reads
without colour ((•) and ( )). A corpus other than the explorer's own is checked when Enter is
pressed (in a worker: a large file takes a moment; the model is never loaded): a bad one is refused
in one line and the dialog stays open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, Static

from engine.errors import UserError, first_line
from engine.neuron_engine import AnyCorpus, NeuronEngine
from tui.screens.dialog import Dialog


@dataclass(frozen=True)
class PassChoice:
    all_layers: bool
    cap: int | None  # None: the whole corpus
    corpus: str | None = None  # a corpus as --corpus takes it; None: the one the explorer started with
    # The chosen corpus, opened and checked by the dialog (None when ``corpus`` is None).
    loaded: AnyCorpus | None = field(default=None, compare=False, repr=False)


def parse_cap(text: str) -> int | None:
    """'all' or nothing: the whole corpus; else a whole number of tokens (1,000 and 1_000 too)."""
    cleaned = text.strip().lower().replace(",", "").replace("_", "")
    if cleaned in ("", "all"):
        return None
    if not cleaned.isdigit() or int(cleaned) < 1:
        raise ValueError(f"the token cap is a whole number of tokens, or all: got {text.strip()!r}")
    return int(cleaned)


@dataclass(frozen=True)
class CorpusOption:
    spec: str | None  # None: the explorer's own corpus; "": a file typed in below
    words: str


def corpus_options(started_with: str, builtins: list[tuple[str, str, str]]) -> list[CorpusOption]:
    """The explorer's own corpus first, then the other built-in ones, then a file typed in.
    ``builtins``: (name, full name, description), as NeuronEngine.builtin_corpora gives them."""
    own = next((b for b in builtins if started_with in (b[0], b[1])), None)
    first = f"{own[0]}, as started: {own[2]}" if own else f"as started: {started_with}"
    options = [CorpusOption(None, first)]
    options += [
        CorpusOption(name, f"{name}: {about}") for name, _, about in builtins if own is None or name != own[0]
    ]
    return options + [CorpusOption("", "a file, a folder or hf:NAME, typed below")]


def radio(rows: list[tuple[bool, str]]) -> Text:
    """(•) before the chosen row, ( ) before the others: the choice reads without colour."""
    text = Text()
    for chosen, words in rows:
        if text:
            text.append("\n")
        text.append(f"{'(•)' if chosen else '( )'} {words}", style="bold" if chosen else "")
    return text


class PassDialog(Dialog[PassChoice | None]):
    DEFAULT_CSS = """
    PassDialog #pass-error { max-height: 3; text-overflow: ellipsis; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel-pass"),
        Binding("enter", "start", "Start", priority=True, id="start-pass"),  # from any field
        Binding("up", "choose(-1)", "This layer / all layers (the corpus after Tab)", id="pass-layers"),
        Binding("down", "choose(1)", "This layer / all layers (the next corpus after Tab)", id="pass-down"),
        Binding("tab", "app.focus_next", "From the token cap to the corpus", id="pass-next-field"),
    ]

    class Checked(Message):
        """The chosen corpus was opened (``choice``) or refused (``error``, one line)."""

        def __init__(self, choice: PassChoice | None, error: str | None) -> None:
            super().__init__()
            self.choice, self.error = choice, error

    def __init__(
        self,
        layer: int,
        n_layers: int,
        default_cap: int | None,
        device_words: str,
        corpus_name: str | None = None,
        builtins: list[tuple[str, str, str]] | None = None,
        check: Callable[[str], AnyCorpus] | None = None,
    ) -> None:
        """``corpus_name``: the corpus the explorer started with (the default corpus for None);
        ``check(spec)`` opens a corpus and raises UserError on a bad one (NeuronEngine.corpus)."""
        super().__init__()
        self.shown_layer, self.n_layers = layer, n_layers
        self.default_cap, self.device_words = default_cap, device_words
        self.all_layers = False
        started_with = corpus_name or NeuronEngine.default_corpus_name()
        self.options = corpus_options(started_with, builtins or NeuronEngine.builtin_corpora())
        self.chosen = 0  # index into options
        self.check = check or NeuronEngine.corpus
        self.checking = False

    def compose(self) -> ComposeResult:
        shown = "all" if self.default_cap is None else f"{self.default_cap:,}"
        with Vertical():
            yield Label("Run the model over the corpus", id="pass-title", markup=False)
            yield Static(self._layers_text(), id="pass-layers")
            yield Label("tokens to read (a number, or all):", markup=False)
            yield Input(value=shown, id="pass-cap")
            yield Label("corpus (or type a path below):", markup=False)
            yield Static(self._corpus_text(), id="pass-corpus")
            yield Input(placeholder="a .txt or .jsonl file, a folder or hf:NAME", id="pass-path")
            default = "the whole corpus" if self.default_cap is None else f"{shown} tokens"
            yield Label(
                f"default on {self.device_words}: {default}. Up/down: the layers; Tab, then up/down: "
                "the corpus. Enter starts, Escape cancels.",
                classes="dialog-hint",
                markup=False,
            )
            yield Label("", id="pass-error", markup=False)

    def _layers_text(self) -> Text:
        return radio(
            [
                (not self.all_layers, f"this layer (L{self.shown_layer}): its pass stops after it"),
                (self.all_layers, f"all {self.n_layers} layers"),
            ]
        )

    def _corpus_text(self) -> Text:
        return radio([(index == self.chosen, option.words) for index, option in enumerate(self.options)])

    def on_mount(self) -> None:
        self.query_one("#pass-cap", Input).focus()

    def _on_corpus(self) -> bool:
        """Whether up/down choose the corpus: the focus is on the path (Tab has moved there)."""
        return self.focused is self.query_one("#pass-path", Input)

    def action_choose(self, step: int) -> None:
        if self._on_corpus():
            self.chosen = (self.chosen + step) % len(self.options)
            self.query_one("#pass-corpus", Static).update(self._corpus_text())
        else:
            self.action_toggle_layers()

    def action_toggle_layers(self) -> None:
        self.all_layers = not self.all_layers
        self.query_one("#pass-layers", Static).update(self._layers_text())

    @on(Input.Changed, "#pass-path")
    def _typed_a_path(self, event: Input.Changed) -> None:
        if event.value.strip() and self.options[self.chosen].spec != "":
            self.chosen = len(self.options) - 1  # typing a path chooses "a file"
            self.query_one("#pass-corpus", Static).update(self._corpus_text())

    def _error(self, words: str) -> None:
        """An error (or the check under way) in the hint's place: the dialog keeps its height."""
        self.query_one("#pass-error", Label).update(words)
        self.query_one(".dialog-hint", Label).display = not words

    def action_start(self) -> None:
        if self.checking:
            return
        try:
            cap = parse_cap(self.query_one("#pass-cap", Input).value)
        except ValueError as error:
            self._error(str(error))
            return
        spec = self.options[self.chosen].spec
        if spec is None:
            self.dismiss(PassChoice(self.all_layers, cap))
            return
        if spec == "":
            spec = self.query_one("#pass-path", Input).value.strip()
            if not spec:
                self._error("type a file, a folder or hf:NAME, or choose another corpus")
                return
        self.checking = True
        self._error(f"opening {spec}…")
        self.open_corpus(spec, self.all_layers, cap)

    @work(thread=True, exclusive=True, group="pass-corpus", exit_on_error=False)
    def open_corpus(self, spec: str, all_layers: bool, cap: int | None) -> None:
        try:
            loaded = self.check(spec)
        except UserError as error:
            self.post_message(self.Checked(None, first_line(error)))
            return
        self.post_message(self.Checked(PassChoice(all_layers, cap, spec, loaded), None))

    def on_pass_dialog_checked(self, message: Checked) -> None:
        self.checking = False
        if message.choice is None:
            self._error(message.error or "the corpus cannot be read")
            return
        self.dismiss(message.choice)
