"""The collection from the main screen: marks and notes go to the shared collection file at once,
u undoes this explorer's last change, and other explorers' changes to the file show up within a
second. It draws nothing: ``MarksChanged`` tells the screen to redraw what shows marks."""

from __future__ import annotations

from textual.widget import Widget

from engine.errors import UserError
from engine.neuron_engine import Collection
from tui.messages import MarksChanged
from tui.screens.mark_keys import ask_note
from tui.state import ExplorerState

COLLECTION_POLL = 1.0  # seconds between looks at the collection file (another explorer's changes)


class Marks(Widget):
    DEFAULT_CSS = "Marks { display: none; }"

    def __init__(self, state: ExplorerState) -> None:
        super().__init__()
        self.state = state

    def open(self, collection: Collection) -> None:
        """The collection of the kind of unit listed is known: keep it, and follow the file of the
        kind listed from now on (one poll for both kinds)."""
        following = any(held.collection is not None for held in self.state.kinds.values())
        self.state.collection = collection
        if collection.warning:
            self.notify(collection.warning, severity="warning", timeout=15)
        if not following:
            self.set_interval(COLLECTION_POLL, self._follow_file)

    def _follow_file(self) -> None:
        """Another explorer on the same model may have marked or noted neurons: show them."""
        collection = self.state.collection
        if collection is None:
            return
        try:
            changed = collection.refresh()
        except UserError:
            return  # said when a change is saved; a passing read error is no news
        if changed:
            self.post_message(MarksChanged())

    def toggle(self, layer: int, neuron: int) -> None:
        """Mark or unmark the neuron (the layer it was pressed in, whatever is on screen now)."""
        try:
            self.state.toggle_mark(layer, neuron)
        except UserError as error:  # the collection file could not be written
            self.notify(str(error), title="mark not saved", severity="error")
        self.post_message(MarksChanged())

    def note(self, layer: int, neuron: int) -> None:
        """A short note on the neuron; writing one marks it."""
        collection = self.state.collection
        if collection is not None:
            ask_note(
                self.screen, collection, layer, neuron, self._noted, self.state.unit_label(layer, neuron)
            )

    def _noted(self, saved: bool) -> None:
        self.post_message(MarksChanged())

    def undo(self) -> None:
        """Undo this explorer's last mark, unmark or note (the collection file is changed back)."""
        collection = self.state.collection
        if collection is None:
            return
        from tui.screens.collection import undo_and_say

        undo_and_say(collection, self.screen)
        self.post_message(MarksChanged())
