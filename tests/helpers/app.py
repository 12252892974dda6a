"""Driving the explorer with Pilot: building the app, waiting for state changes, holding scans.

Tests wait for states, never for a wall-clock budget: a loaded machine passes as an idle one
does, and a real hang is caught by pytest-timeout.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from engine.data.progress import ScanProgress
from engine.errors import ScanCancelled
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ScanSettings
from tui.app import NeuronApp

GATE_POLL = 0.01  # seconds between checks of a held scan's gate and its cancellation


class GatedEngine(NeuronEngine):
    """An engine whose layer computations wait at a gate until the test opens it, so that a test
    can act while a scan is provably in progress on a machine of any speed."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.open_layers: set[int] = set()
        self.all_open = threading.Event()
        self.held: int | None = None  # the layer whose computation waits at the gate now

    def release(self, *layers: int) -> None:
        self.open_layers.update(layers)

    def release_all(self) -> None:
        self.all_open.set()

    def layer(self, layer, settings, listener=None, cancelled=None):
        if self.cached_layer(layer, settings) is None:
            if listener:
                listener(ScanProgress("scanning", layer, 0, 1))
            self.held = layer
            try:
                while layer not in self.open_layers and not self.all_open.wait(GATE_POLL):
                    if cancelled is not None and cancelled():
                        raise ScanCancelled()
            finally:
                self.held = None
        return super().layer(layer, settings, listener=listener, cancelled=cancelled)


class PassGatedEngine(NeuronEngine):
    """An engine whose corpus passes land at every batch (checkpoints too) and, once every chosen
    layer has landed, wait at a gate before the next batch until the test opens it: a test sees
    evidence on screen while the pass is provably still reading, on a machine of any speed."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.gate = threading.Event()
        self.landings: list[tuple[int, object]] = []  # (layer, reading) as they landed

    def corpus_pass(
        self,
        layers,
        corpus,
        settings,
        scan,
        ranks=None,
        listener=None,
        cancelled=None,
        checkpoint_seconds=30.0,
        on_landed=None,
        land_seconds=None,
    ):
        def landed(layer, evidence, reading):
            self.landings.append((layer, reading))
            if on_landed is not None:
                on_landed(layer, evidence, reading)

        def listen(progress):
            if listener is not None:
                listener(progress)
            if progress.stage == "running" and self.landings:  # after the first batch's landings
                self.gate.wait()

        return super().corpus_pass(
            layers, corpus, settings, scan, ranks, listen, cancelled, 0.0, landed, land_seconds
        )


def make_app(
    model: Path,
    cache: Path,
    export_dir: Path | None = None,
    engine_class: type[NeuronEngine] = NeuronEngine,
    **options,
) -> NeuronApp:
    settings = options.pop("settings", ScanSettings())
    device = options.pop("device", "cpu")
    engine = engine_class(EngineOptions(model=str(model), device=device, cache_dir=cache, **options))
    return NeuronApp(engine, settings, export_dir=export_dir)


async def wait_for(pilot, predicate, step: float = 0.05) -> None:
    """Let the app run until ``predicate()`` holds."""
    while not predicate():
        await pilot.pause(step)


def all_computed(app: NeuronApp) -> bool:
    main = app.main
    return app.state.scan_complete and app.state.null is not None and main.layer_view.result is not None


def showing(app: NeuronApp, layer: int) -> bool:
    return app.main.layer_view.result is not None and app.main.layer_view.result.layer == layer


async def settle(pilot, app: NeuronApp) -> None:
    """Wait until every layer and the null baseline are in, and the screen has redrawn."""
    await wait_for(pilot, lambda: all_computed(app))
    await pilot.pause(0.2)
    await asyncio.sleep(0)


async def answer_prompt(pilot, app: NeuronApp, key: str, text: str) -> None:
    """Press ``key``, type ``text`` into the dialog it opens, and submit it."""
    from tui.screens.prompt import PromptScreen

    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
    app.screen.query_one("Input").value = text
    await pilot.press("enter")
    await wait_for(pilot, lambda: not isinstance(app.screen, PromptScreen))


def burst(app: NeuronApp, *keys: str) -> int:
    """Deliver ``keys`` to the app all at once, as a slow SSH link or a fast typist does: every key
    is queued before the first is handled (Pilot's ``press`` waits between keys; this does not).
    A key is a key's name (``enter``, ``question_mark``, ``ctrl+u``) or text typed character by
    character (``kurt>3``); the number of key events sent."""
    from textual import events
    from textual.keys import key_to_character

    sent: list[events.Key] = []
    for key in keys:
        if _is_key_name(key):
            sent.append(events.Key(key, key_to_character(key)))
        else:
            sent += [events.Key(_key_name(character), character) for character in key]
    for event in sent:
        app.post_message(event)
    return len(sent)


async def burst_read(pilot, app: NeuronApp, *keys: str) -> None:
    """``burst`` the keys, then wait until the explorer has read every one to the end."""
    expected = app.key_order.read + burst(app, *keys)
    await wait_for(pilot, lambda: app.key_order.read >= expected and app.key_order.idle)


NAMED_KEYS = frozenset(
    {"enter", "escape", "space", "tab", "backspace", "delete", "up", "down", "left", "right"}
    | {"home", "end", "pageup", "pagedown", "slash", "question_mark", "right_square_bracket"}
    | {"left_square_bracket"}
)
KEY_NAME_REPLACEMENTS = {
    "solidus": "slash",
    "hyphen_minus": "minus",
    "plus_sign": "plus",
    "low_line": "underscore",
}


def _is_key_name(key: str) -> bool:
    """A name of one key (``enter``, ``ctrl+u``) rather than text to type (``abc``, ``2:5``)."""
    return key in NAMED_KEYS or key.startswith(("ctrl+", "shift+", "alt+"))


def _key_name(character: str) -> str:
    """Textual's name of the key that types ``character`` (as its terminal driver names it)."""
    import unicodedata

    if character.isalnum():
        return character
    name = unicodedata.name(character).lower().replace("-", "_").replace(" ", "_")
    return KEY_NAME_REPLACEMENTS.get(name, name)
