"""How the explorer looks: every view at 80x24, and the main screen, the detail and the help at 120x40
too (tiny models).

The snapshots hold no path: the explorer runs without a cache (the help then says "cache: off"), so
nothing on screen depends on where TMPDIR, HOME or the working directory are.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.helpers.app import make_app, settle, wait_for
from tui.screens.ablation import AblationScreen
from tui.screens.all_layers import AllLayersScreen
from tui.screens.collection import CollectionScreen
from tui.screens.coverage import CoverageScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.neuron_probe import NeuronProbeScreen
from tui.screens.pass_dialog import PassDialog
from tui.screens.projection import ProjectionScreen
from tui.screens.prompt import PromptScreen
from tui.screens.text_probe import TextProbeScreen
from tui.screens.token_search import TokenSearchScreen
from tui.screens.why_token import WhyTokenScreen
from tui.widgets.footer import KeyFooter

SIZES = [(120, 40), (80, 24)]
SMALL = (80, 24)
SNAPSHOTS = Path(__file__).parent / "__snapshots__" / "test_snapshots"
PROBED = "hello there, she said"


def _app(model, tmp_path):
    return make_app(model, tmp_path / "cache", export_dir=tmp_path, use_cache=False)


def _footer_current(screen) -> bool:
    """The footer shows every action the screen shows now (it is rebuilt after focus moves)."""
    footers = list(screen.query(KeyFooter))
    shown = {binding.action for _, binding, _, _ in screen.active_bindings.values() if binding.show}
    return not footers or shown <= {getattr(key, "action", None) for key in footers[0].walk_children()}


async def _drawn(pilot) -> None:
    """Let the screen on top lay out and draw what it was just given, its footer current and its
    text cursors still (a blinking cursor would be caught on or off)."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await wait_for(pilot, lambda: _footer_current(pilot.app.screen))
    await pilot.pause(0.3)


async def _open(pilot, key: str, screen_type) -> None:
    await settle(pilot, pilot.app)
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, screen_type))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, tiny_gguf, tmp_path, size):
    async def ready(pilot):
        await settle(pilot, pilot.app)
        await pilot.press("j", "space", "j")
        await _drawn(pilot)

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_screen(snap_compare, tiny_gguf, tmp_path, size):
    async def open_detail(pilot):
        await _open(pilot, "enter", NeuronDetailScreen)
        detail = pilot.app.screen
        await wait_for(pilot, lambda: detail.scores_settled and detail.inputs is not None)
        await _drawn(pilot)

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=size, run_before=open_detail)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, tiny_gguf, tmp_path, size):
    async def open_help(pilot):
        await _open(pilot, "question_mark", HelpScreen)
        await _drawn(pilot)

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=size, run_before=open_help)


async def _all_layers(pilot) -> None:
    await _open(pilot, "a", AllLayersScreen)


async def _collection(pilot) -> None:
    await settle(pilot, pilot.app)
    await pilot.press("space", "space", "m")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CollectionScreen) and pilot.app.screen.loaded)


async def _token_search(pilot) -> None:
    await _open(pilot, "slash", TokenSearchScreen)
    search = pilot.app.screen
    await pilot.press(*"tok2")
    # The matches of the whole text, not of a letter typed before it ("tok" matches tok3..).
    await wait_for(pilot, lambda: bool(search.rows) and all("tok2" in m.text for m in search.matches))


async def _coverage(pilot) -> None:
    await _open(pilot, "c", CoverageScreen)


async def _projection(pilot) -> None:
    await _open(pilot, "p", ProjectionScreen)


async def _pass_dialog(pilot) -> None:
    await _open(pilot, "A", PassDialog)


async def _prompt(pilot) -> None:
    await _open(pilot, "f", PromptScreen)
    await pilot.press(*"kurt>3")


VIEWS = {
    "all-layers": _all_layers,
    "collection": _collection,
    "token-search": _token_search,
    "coverage": _coverage,
    "projection": _projection,
    "pass-dialog": _pass_dialog,
    "prompt": _prompt,
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_view_at_80x24(snap_compare, tiny_gguf, tmp_path, view):
    async def open_view(pilot):
        await VIEWS[view](pilot)
        await _drawn(pilot)

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=SMALL, run_before=open_view)


async def _probed(pilot) -> None:
    """The text probe, run on a sentence (the model runs: a checkpoint with a tokenizer)."""
    await _open(pilot, "t", TextProbeScreen)
    probe = pilot.app.screen
    await pilot.press(*PROBED, "enter")
    await wait_for(pilot, lambda: probe.firing is not None)


async def _neuron_probed(pilot) -> None:
    """From the text probe, one neuron on the same text."""
    await _probed(pilot)
    await pilot.press("down", "enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, NeuronProbeScreen))
    await wait_for(pilot, lambda: pilot.app.screen.values is not None)


async def _why_token(pilot) -> None:
    """From the text probe, why the token at position 2 (its first row after position 0's one)."""
    await _probed(pilot)
    await pilot.press("down", "w")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, WhyTokenScreen))
    await wait_for(pilot, lambda: pilot.app.screen.found is not None)


async def _ablated(pilot) -> None:
    """After the text probe, the listed neuron's detail, and that neuron ablated on the probed text."""
    await _probed(pilot)
    await pilot.press("escape", "enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, NeuronDetailScreen))
    await pilot.press("x")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, AblationScreen))
    await wait_for(pilot, lambda: pilot.app.screen.found is not None)


PROBES = {
    "text-probe": _probed,
    "neuron-probe": _neuron_probed,
    "why-token": _why_token,
    "ablation": _ablated,
}


@pytest.mark.parametrize("view", list(PROBES))
def test_probe_at_80x24(snap_compare, tiny_llama_dir, tmp_path, view):
    async def open_view(pilot):
        await PROBES[view](pilot)
        await _drawn(pilot)

    assert snap_compare(_app(tiny_llama_dir, tmp_path), terminal_size=SMALL, run_before=open_view)


# What a path on these machines (or a user's) starts with, as an SVG snapshot would hold it.
PATH_LIKE = re.compile(r"(?<![\w.])/(?:tmp|home|root|work|Users|var|private)/")


def test_no_stored_snapshot_holds_a_path():
    stored = sorted(SNAPSHOTS.glob("*.svg"))
    assert stored, "the snapshots are stored beside this file"
    for snapshot in stored:
        # Text is drawn with &#160; for spaces; the SVG's namespace URLs are not paths.
        drawn = snapshot.read_text().replace("&#160;", " ")
        assert not PATH_LIKE.search(drawn), f"{snapshot.name} holds a path"
