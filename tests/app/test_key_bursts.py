"""Keys that arrive in one burst (typed ahead, or delivered together by a slow SSH link) each reach
the widget meant for them, in order: a dialog's text goes into the dialog, its Enter submits it
once, and the key after it acts on the screen below. ``burst`` queues every key before the first
is handled; the tests then wait for the explorer to have read them all."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.helpers.app import burst_read, make_app, settle, showing, wait_for
from tui.filtering import Condition
from tui.screens.detail import NeuronDetailScreen
from tui.screens.main import MainScreen
from tui.widgets.neuron_list import NeuronList

pytestmark = pytest.mark.xdist_group("explorer")


async def test_a_filter_typed_ahead_is_applied_and_the_next_key_moves_the_cursor(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        sort, reverse = app.state.sort_key, app.state.reverse
        await burst_read(pilot, app, "f", "kurt>3", "enter", "j")
        assert app.state.conditions == [Condition("kurtosis", ">", 3.0)]
        assert (app.state.sort_key, app.state.reverse) == (sort, reverse), "k, u, r, t went into the field"
        assert isinstance(app.screen, MainScreen)
        assert app.main.query_one(NeuronList).cursor == 1

        await burst_read(
            pilot, app, "f", "ctrl+u", "null-z>0", "enter"
        )  # a filter set already: replaced, not re-applied
        assert app.state.conditions == [Condition("null_z", ">", 0.0)]


async def test_go_to_then_enter_twice_opens_that_neurons_detail(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await burst_read(pilot, app, "g", "57", "enter")
        assert app.main.query_one(NeuronList).current_neuron == 57

        await burst_read(pilot, app, "g", "2:5", "enter", "enter")
        assert isinstance(app.screen, NeuronDetailScreen) and app.screen.neuron == 5
        assert app.is_running

        # Another layer, not in memory (as most are on a model with more layers than are kept):
        # the second Enter arrives before it does, and its detail opens once it has landed.
        app.state.results.pop(0, None)
        await burst_read(pilot, app, "escape", "g", "0:7", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert app.screen.neuron == 7 and app.screen.result.layer == 0


async def test_a_note_typed_ahead_lands_on_the_highlighted_neuron(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_TUI_DATA_DIR", str(tmp_path / "data"))
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        listing = app.main.query_one(NeuronList)
        first = listing.current_neuron
        await burst_read(pilot, app, "n", "her pronoun", "enter", "j", "space")
        collection = app.state.collection
        assert collection.note(2, first) == "her pronoun"
        second = listing.order[1]
        assert 2 in collection.layers() and int(second) in collection.in_layer(2)
        assert listing.cursor == 2


async def test_every_dialog_takes_its_keys_and_leaves_the_next_key_to_the_screen(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c", export_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        listing = app.main.query_one(NeuronList)
        target = tmp_path / "listed.jsonl"
        await burst_read(pilot, app, "E", "ctrl+u", str(target), "enter", "j")
        await wait_for(pilot, lambda: target.exists())
        assert listing.cursor == 1

        await burst_read(pilot, app, "p", "+", "enter", "j")  # the projection dialog: tick all three, apply
        assert app.state.settings.projection.cosine and app.state.settings.projection.fold_final_norm

        await burst_read(
            pilot, app, "A", "escape", "question_mark", "escape", "m", "escape", "a", "escape", "j"
        )
        assert isinstance(app.screen, MainScreen)

        await burst_read(pilot, app, "slash", " tok", "escape")  # the token search's field gets the text
        assert isinstance(app.screen, MainScreen)
        await burst_read(pilot, app, "slash", "abc")
        assert app.screen.query_one(Input).value == "abc"


async def test_a_go_to_a_layer_still_on_its_way_lands_with_the_cursor_row_on_screen(tiny_gguf, tmp_path):
    from tests.helpers.app import GatedEngine

    app = make_app(tiny_gguf, tmp_path / "c", engine_class=GatedEngine)
    async with app.run_test(size=(80, 24)) as pilot:
        app.engine.release(2)
        await wait_for(pilot, lambda: app.main.layer_view.result is not None)
        listing = app.main.query_one(NeuronList)
        deep = 90  # sorted by neuron, row 90 of 96: far below the first screen
        await burst_read(pilot, app, "s", "g", f"0:{deep}", "enter")
        assert app.state.sort_key == "neuron"
        assert app.main.layer_view.result is None, "layer 0 is on its way, held at the gate"
        app.engine.release_all()
        await wait_for(pilot, lambda: showing(app, 0))
        await pilot.pause()
        assert listing.current_neuron == deep
        top = listing.scroll_offset.y
        assert top <= listing.cursor < top + listing.body_height, "the cursor row is on screen"
