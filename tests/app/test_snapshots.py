"""How the explorer looks: main screen, neuron detail and help at 120x40 and 80x24 (tiny model)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers.app import make_app, settle, wait_for
from tui.screens.detail import NeuronDetailScreen
from tui.screens.help import HelpScreen

SIZES = [(120, 40), (80, 24)]


# The help names the cache directory, so snapshots use one fixed path (emptied for each test), and
# run in one test process at a time (make test runs the suite in two).
SNAPSHOT_CACHE = Path(tempfile.gettempdir()) / "neuron-tui-snapshot-cache"
pytestmark = pytest.mark.xdist_group("snapshots")


def _app(tiny_gguf, tmp_path):
    shutil.rmtree(SNAPSHOT_CACHE, ignore_errors=True)
    return make_app(tiny_gguf, SNAPSHOT_CACHE, export_dir=tmp_path)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, tiny_gguf, tmp_path, size):
    async def ready(pilot):
        await settle(pilot, pilot.app)
        await pilot.press("j", "space", "j")

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_screen(snap_compare, tiny_gguf, tmp_path, size):
    async def open_detail(pilot):
        await settle(pilot, pilot.app)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, NeuronDetailScreen)
                and pilot.app.screen.scores_settled
                and pilot.app.screen.inputs is not None
            ),
        )
        await pilot.pause(0.3)

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=size, run_before=open_detail)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, tiny_gguf, tmp_path, size):
    async def open_help(pilot):
        await settle(pilot, pilot.app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        await pilot.pause(0.3)

    assert snap_compare(_app(tiny_gguf, tmp_path), terminal_size=size, run_before=open_help)
