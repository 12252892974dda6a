"""Space marks and n notes the neuron a view shows, in every view that shows one (the detail, the
token search, the coverage view, the probes): the same collection as the main list, saved at once,
undone with u in the list or the collection. A dictionary's features listed, they are its
features, marked in the dictionary set's own collection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from textual.binding import Binding

from engine.errors import UserError
from tui.messages import MarksChanged
from tui.screens.prompt import PromptScreen
from tui.state import ExplorerState

if TYPE_CHECKING:
    from textual.screen import Screen

    from engine.neuron_engine import Collection


class Explorer(Protocol):
    """What a view asks of the app it runs in (tui.app.NeuronApp): the explorer's state."""

    state: ExplorerState


def mark_bindings(view: str) -> list[Binding]:
    return [
        Binding("space", "mark_shown", "Mark", id=f"{view}-mark"),
        Binding("n", "note_shown", "Note", id=f"{view}-note"),
    ]


def ask_note(
    screen: Screen,
    collection: Collection,
    layer: int,
    neuron: int,
    after: Callable[[bool], None],
    label: str,
) -> None:
    """The note dialog for one unit (``label`` names it); a note written marks it. ``after(saved)``
    follows a note typed, also when saving failed (the error is said; the views show what the file
    holds)."""

    def save(text: str | None) -> None:
        if text is None:
            return
        try:
            collection.set_note(layer, neuron, text)
        except UserError as error:
            screen.notify(str(error), title="note not saved", severity="error")
            after(False)
            return
        after(True)

    hint = "Enter saves (it is marked), Escape cancels"
    prompt = PromptScreen(f"Note for {label}", collection.note(layer, neuron), hint)
    screen.app.push_screen(prompt, save)


class MarkKeys:
    """A screen's mark and note keys; the screen says which neuron it shows."""

    def marking_target(self) -> tuple[int, int] | None:
        """(layer, neuron) the keys act on, or None (nothing to mark here)."""
        raise NotImplementedError

    def _screen(self) -> Screen:
        return cast("Screen", self)

    def _state(self) -> ExplorerState:
        return cast(Explorer, self._screen().app).state

    def _collection(self) -> Collection | None:
        return self._state().collection

    def action_mark_shown(self) -> None:
        target, collection = self.marking_target(), self._collection()
        if target is None or collection is None:
            return
        layer, neuron = target
        try:
            collection.toggle(layer, neuron)
        except UserError as error:
            self._screen().notify(str(error), title="mark not saved", severity="error")
            return
        marked = neuron in collection.in_layer(layer)
        label = self._state().unit_label(layer, neuron)
        self._screen().notify(f"{label} {'marked' if marked else 'unmarked'}")
        self._marks_changed()

    def action_note_shown(self) -> None:
        target, collection = self.marking_target(), self._collection()
        if target is None or collection is None:
            return
        layer, neuron = target
        label = self._state().unit_label(layer, neuron)

        def saved(ok: bool) -> None:
            if ok:
                self._screen().notify(f"note kept on {label} (it is marked)")
            self._marks_changed()

        ask_note(self._screen(), collection, layer, neuron, saved, label)

    def _marks_changed(self) -> None:
        self._screen().post_message(MarksChanged())  # up to the app: the main list shows it at once
        self.marks_changed()

    def marks_changed(self) -> None:
        """The screen's own mark display, if it has one."""
