"""Textual's Footer, recomposed once for a burst of binding updates.

The stock Footer rebuilds all its keys after every bindings update, and several arrive together as
a screen opens (focus moves, the first layer enables actions): the main screen's footer was built
four times before its first full frame, each time restyling some thirty keys. Here an update that
arrives while a rebuild is already due is left to that rebuild, which reads the bindings as they
are by then.

A view for either kind of unit offers its keys in the words of the kind it shows (``offered``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from textual.binding import ActiveBinding
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


def offered(
    bindings: dict[str, ActiveBinding],
    described: Mapping[str, str] | None = None,
    refused: Collection[str] = (),
) -> dict[str, ActiveBinding]:
    """What a footer offers of a screen's ``bindings``: those whose ids are in ``refused`` left out
    (their action would only say, in one line, why it cannot run for the units shown: the key still
    says so), and those whose ids are in ``described`` with that description (in the words of the
    units shown). Keys are dispatched through the binding chain, not this."""
    described = described or {}
    shown: dict[str, ActiveBinding] = {}
    for key, active in bindings.items():
        binding_id = active.binding.id or ""
        if binding_id in refused:
            continue
        if binding_id in described:
            active = active._replace(binding=replace(active.binding, description=described[binding_id]))
        shown[key] = active
    return shown
