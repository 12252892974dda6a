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


async def test_escape_and_a_key_arriving_together_are_both_keys(tiny_gguf, tmp_path):
    """A terminal hands Escape and the key after it, arriving together, over as one Alt+key: the
    view closes and the key acts on the screen below."""
    from textual import events

    from tui.screens.all_layers import AllLayersScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        listing = app.main.query_one(NeuronList)
        await burst_read(pilot, app, "enter")
        assert isinstance(app.screen, NeuronDetailScreen)
        before = app.key_order.read
        app.post_message(events.Key("alt+j", "j"))  # what the terminal's parser makes of ESC j
        await wait_for(pilot, lambda: app.key_order.read > before and app.key_order.idle)
        assert app.key_order.read == before + 2, "read as Escape, then j"
        assert isinstance(app.screen, MainScreen) and listing.cursor == 1

        await burst_read(pilot, app, "a")
        assert isinstance(app.screen, AllLayersScreen)
        before = app.key_order.read
        app.post_message(events.Key("alt+m", "m"))
        await wait_for(pilot, lambda: app.key_order.read > before and app.key_order.idle)
        assert type(app.screen).__name__ == "CollectionScreen"


async def test_a_filter_keeps_the_cursor_on_its_neuron_when_it_passes(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        listing = app.main.query_one(NeuronList)
        kurtosis = app.main.layer_view.result.kurtosis
        passing = [int(n) for n in listing.order if kurtosis[int(n)] > 3][3]
        await burst_read(pilot, app, "g", str(passing), "enter", "f", "kurt>3", "enter")
        assert app.state.conditions and listing.current_neuron == passing
        top = listing.scroll_offset.y
        assert top <= listing.cursor < top + listing.body_height


async def test_a_go_to_that_clears_the_filter_on_this_layer_shows_its_row(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        listing = app.main.query_one(NeuronList)
        kurtosis = app.main.layer_view.result.kurtosis
        hidden = [n for n in range(len(kurtosis)) if kurtosis[n] <= 3.5][-1]
        await burst_read(pilot, app, "s", "f", "kurt>3.5", "enter", "g", str(hidden), "enter")
        assert app.state.conditions == [] and listing.current_neuron == hidden
        await pilot.pause()
        top = listing.scroll_offset.y
        assert top <= listing.cursor < top + listing.body_height, "the cursor row is on screen"


async def test_tab_moves_on_in_the_token_search_and_j_k_move_the_layer_picker(tiny_gguf, tmp_path):
    from tui.widgets.layer_picker import LayerPicker

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await burst_read(pilot, app, "slash", "tok", "tab", "j")
        field = app.screen.query_one(Input)
        assert field.value == "tok" and not field.has_focus
        await burst_read(pilot, app, "escape")
        picker = app.main.query_one(LayerPicker)
        picker.focus()
        await pilot.pause()
        start = picker.highlighted
        await burst_read(pilot, app, "k", "k")
        assert picker.highlighted == start - 2
        await burst_read(pilot, app, "j")
        assert picker.highlighted == start - 1


async def test_a_refused_filter_or_export_path_keeps_its_dialog_open_to_correct(tiny_gguf, tmp_path):
    from tui.screens.prompt import PromptScreen

    app = make_app(tiny_gguf, tmp_path / "c", export_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await burst_read(pilot, app, "f", "kurt>>3", "enter")
        assert isinstance(app.screen, PromptScreen) and app.state.conditions == []
        assert "not a number" in str(app.screen.query_one("#prompt-hint").render())
        await burst_read(pilot, app, "ctrl+u", "kurt>3", "enter")
        assert isinstance(app.screen, MainScreen) and app.state.conditions

        missing = tmp_path / "no-such-folder" / "x.csv"
        await burst_read(pilot, app, "E", "ctrl+u", str(missing), "enter")
        assert isinstance(app.screen, PromptScreen)
        refusal = str(app.screen.query_one("#prompt-hint").render())
        assert "does not exist" in refusal and "stdout" not in refusal
        await burst_read(pilot, app, "ctrl+u", str(tmp_path / "x.txt"), "enter")
        assert isinstance(app.screen, PromptScreen) and "stdout" not in str(
            app.screen.query_one("#prompt-hint").render()
        )
        await burst_read(pilot, app, "ctrl+u", str(tmp_path / "x.csv"), "enter")
        await wait_for(pilot, lambda: (tmp_path / "x.csv").exists())
        assert isinstance(app.screen, MainScreen)


async def test_without_a_cache_a_layer_the_scan_has_passed_is_computed_again(tiny_gguf, tmp_path):
    """Without a cache the background scan keeps only the layer on screen: a layer it passed, no
    longer in memory, is computed when asked for instead of waiting for ever."""
    app = make_app(tiny_gguf, tmp_path / "c", use_cache=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await wait_for(pilot, lambda: not app.main.scanner.running)
        app.state.results.pop(0, None)
        await burst_read(pilot, app, "g", "0:5", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert app.screen.neuron == 5 and app.screen.result.layer == 0
