"""Keys one at a time, each handled to the end before the next is read.

Textual hands a key to the focused widget's queue and reads the next key at once, while the first
is still on its way: its binding runs only when it has bubbled back up to the app. Keys that arrive
together (typed ahead, or a slow SSH link delivering a burst) were therefore read by the screen
below a dialog before the dialog was up, or by a dialog already being dismissed: `f kurt>10 Enter`
moved the list's cursor and reversed its sort; `g 1135 Enter Enter` dismissed the prompt twice and
ended the explorer.

``KeyOrder`` holds every key that arrives while another is in flight and releases them in order.
A key is done when it has passed through the widgets it bubbles through (each has processed it or
stopped it) and what it opened or closed has settled: the screen on top is mounted and has stayed
on top while every node of it and the app processed what was queued, round after round, as many
rounds as the screen is deep (a message its binding posted, such as a submitted field, bubbles up
one level a round before the screen acts on it). Only states are awaited, never a clock. Ctrl+C
is never held.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from textual import events
from textual.app import App
from textual.dom import DOMNode

NEVER_HELD = frozenset({"ctrl+c"})
POLL_SECONDS = 0.05  # how often a wait checks whether the node it waits on went away


class KeyOrder:
    def __init__(self, app: App) -> None:
        self.app = app
        self.held: deque[events.Key] = deque()
        self.in_flight = False
        self._released: set[int] = set()  # ids of held keys handed back to the app, in order
        self._task: asyncio.Task[None] | None = None
        self.read = 0  # keys handed on so far (a test waits for a burst to be read whole)

    @property
    def idle(self) -> bool:
        """No key is in flight or held."""
        return not self.in_flight and not self.held

    def admit(self, event: events.Key) -> bool:
        """Whether the app handles ``event`` (a key as it arrives) now; False: it is held."""
        if event.key in NEVER_HELD:
            return True
        if id(event) in self._released:
            self._released.discard(id(event))
            return True
        if self.in_flight or self.held:
            self.held.append(event)
            return False
        return True

    def handled(self, event: events.Key, target: DOMNode) -> None:
        """The app has handed ``event`` to ``target`` (the focused widget, or the screen): read no
        other key until it is done."""
        self.read += 1
        if event.key in NEVER_HELD:
            return
        self.in_flight = True
        self._task = asyncio.create_task(self._finish(target))

    async def _finish(self, target: DOMNode) -> None:
        try:
            for node in target.ancestors_with_self:  # the key's way up, to the app
                await _processed(node)
            await self._settled()
        finally:
            self.in_flight = False
            self._release_next()

    async def _settled(self) -> None:
        quiet, needed = 0, 1
        while quiet < needed and self.app.is_running:
            screen = self.app.screen
            nodes: list[DOMNode] = [self.app, *screen.walk_children(with_self=True)]
            needed = max(len(node.ancestors_with_self) for node in nodes)
            await asyncio.gather(*(_processed(node) for node in nodes))
            quiet = quiet + 1 if self.app.screen is screen and screen.is_mounted else 0

    def _release_next(self) -> None:
        if self.held and self.app.is_running:
            event = self.held.popleft()
            self._released.add(id(event))
            self.in_flight = True  # keys arriving before it is read again are held behind it
            self.app.post_message(event)


def read_escape_and_letter_apart() -> None:
    """Terminals send Alt+key as Escape then the key, and Textual's input parser also reads a few
    such pairs as editing keys: Escape f as ctrl+right, Escape b as ctrl+left, Escape Backspace as
    ctrl+w, Escape Tab as shift+tab, Escape and a digit as a macOS Option symbol. The explorer binds
    none of them, and an Escape typed just before f must close the view it is in: without these
    pairs in the parser's table, Escape and a letter or digit arriving together reach the app as
    alt+key, which ``keys_typed`` reads as the two keys. (Escape then a punctuation key, arriving
    together, still reaches the app as that key alone: the parser drops the Escape.)"""
    from textual._ansi_sequences import ANSI_SEQUENCES_KEYS

    table = cast(dict, ANSI_SEQUENCES_KEYS)  # typed as a read-only Mapping; it is a dict
    for sequence in [s for s in table if len(s) == 2 and s[0] == "\x1b" and s[1] != "\x1b"]:
        del table[sequence]


def keys_typed(event: events.Key) -> list[events.Key]:
    """The keys the user typed for ``event``. Escape and a key that arrive together (typed ahead, or
    a burst from a slow link) reach the app as one alt+key, as terminals encode Alt; the explorer
    binds no Alt key, so they are the two keys: Escape, then the key."""
    character = event.character
    if not event.key.startswith("alt+") or character is None or len(character) != 1:
        return [event]
    name = character if character.isalnum() else event.key.removeprefix("alt+")
    return [events.Key("escape", "\x1b"), events.Key(name, character)]


async def _processed(node: DOMNode) -> None:
    """Wait until ``node`` has processed everything queued for it now (or has gone away)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def arrived() -> None:
        if not done.done():
            done.set_result(None)

    if not node.call_later(arrived):
        return  # closed: nothing more will be processed there
    while not done.done():
        await asyncio.wait([done], timeout=POLL_SECONDS)
        if not done.done() and not node.is_attached and node is not node.app:
            return
