"""Marks and notes from the main screen: each key acts on the neuron it was pressed on, every
change goes to the shared collection file, u undoes, and other explorers' changes show up.

A part of ``MainScreen`` (a mixin on ``MainParts``); its methods run as the screen's own.
"""

from __future__ import annotations

from engine.errors import UserError
from tui.screens.main_parts import MainParts
from tui.screens.mark_keys import ask_note
from tui.widgets.neuron_list import NeuronList


class MarkActions(MainParts):
    def _follow_collection_file(self) -> None:
        """Another explorer on the same model may have marked or noted neurons: show them."""
        collection = self.state.collection
        if collection is None:
            return
        try:
            changed = collection.refresh()
        except UserError:
            return  # said when a change is saved; a passing read error is no news
        if changed:
            self.refresh_marks()

    def on_neuron_list_mark_toggled(self, message: NeuronList.MarkToggled) -> None:
        # The layer comes with the message: by now another layer may be on screen (keys typed ahead).
        try:
            self.state.toggle_mark(message.layer, message.neuron)
        except UserError as error:  # the collection file could not be written
            self.notify(str(error), title="mark not saved", severity="error")
        self.refresh_marks()

    def action_undo(self) -> None:
        """Undo this explorer's last mark, unmark or note (the collection file is changed back)."""
        collection = self.state.collection
        if collection is None:
            return
        from tui.screens.collection import undo_and_say

        undo_and_say(collection, self)
        self.refresh_marks()

    def refresh_marks(self) -> None:
        listing = self.query_one(NeuronList)
        listing.marked = self.state.marked
        listing.refresh()
        self.refresh_status()

    def action_note(self) -> None:
        """A short note on the highlighted neuron; writing one marks the neuron."""
        neuron = self.query_one(NeuronList).current_neuron
        collection, layer = self.state.collection, self.state.layer
        if neuron is None or collection is None or layer is None:
            return

        ask_note(self, collection, layer, neuron, lambda saved: self.refresh_marks())
