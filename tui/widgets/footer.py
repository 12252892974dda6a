"""Textual's Footer, recomposed once for a burst of binding updates.

The stock Footer rebuilds all its keys after every bindings update, and several arrive together as
a screen opens (focus moves, the first layer enables actions): the main screen's footer was built
four times before its first full frame, each time restyling some thirty keys. Here an update that
arrives while a rebuild is already due is left to that rebuild, which reads the bindings as they
are by then.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    _rebuild_due = False

    def bindings_changed(self, screen: Screen) -> None:
        if self._rebuild_due:
            return
        super().bindings_changed(screen)
        # The stock footer schedules a rebuild only in this case; otherwise nothing is due.
        self._rebuild_due = bool(screen.app.app_focus and self.is_attached and screen is self.screen)

    async def recompose(self) -> None:
        self._rebuild_due = False
        await super().recompose()
