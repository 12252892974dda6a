"""Finding, seeing and moving: go to a neuron, reverse the sort, the cursor always on screen, 80
columns, resizes, literal labels, the detail's 50 tokens and its neighbours, keys as typed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.neuron_engine import NeuronEngine
from engine.settings import Projection
from tests.helpers.app import answer_prompt, make_app, settle, showing, wait_for
from tests.helpers.reference import reference_scores
from tui.screens.all_layers import AllLayersScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.help import HelpScreen, bindings_table
from tui.screens.projection import ProjectionScreen
from tui.widgets.neuron_list import NeuronList

BIG, SMALL = (120, 40), (80, 24)


def status(app) -> str:
    return str(app.query_one("#status-text").render())


def cursor_visible(listing: NeuronList) -> bool:
    return 0 <= listing.cursor - listing.scroll_offset.y < listing.body_height


async def test_go_to_a_neuron_and_step_through_the_detail(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        for typed, layer, neuron in [("L1/N37", 1, 37), ("0:90", 0, 90), ("2/5", 2, 5), ("77", 2, 77)]:
            await answer_prompt(pilot, app, "g", typed)
            await wait_for(pilot, lambda layer=layer: showing(app, layer))
            await wait_for(pilot, lambda neuron=neuron: listing.current_neuron == neuron)
            # The list scrolls to the cursor on its next refresh: wait for that, not for a clock.
            await wait_for(pilot, lambda: cursor_visible(listing))
        await answer_prompt(pilot, app, "g", "L9/N1")  # out of range: said, nothing moves
        assert listing.current_neuron == 77
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        detail = app.screen
        assert str(detail.query_one("#detail-title").render()).startswith("L2/N77")
        order = listing.listed_neurons
        position = order.index(77)
        await pilot.press("right")
        assert detail.neuron == order[position + 1] and listing.current_neuron == order[position + 1]
        await pilot.press("left", "left")
        assert detail.neuron == order[position - 1]
        await pilot.press("]")  # ] still means layers: the detail closes, the next layer... is the last
        await pilot.press("[")
        await wait_for(pilot, lambda: showing(app, 1) and not isinstance(app.screen, NeuronDetailScreen))


async def test_the_detail_lists_50_tokens_each_side_with_ids(tiny_gguf, tiny_weights, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot, app)
        neuron = app.query_one(NeuronList).current_neuron
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        result = app.main.layer_view.result
        assert app.screen.lists_table.row_count in (result.top_k, 50)  # the scan's lists until the row lands
        await wait_for(pilot, lambda: app.screen.scores_settled)
        table = app.screen.lists_table
        assert table.row_count == 50
        scores = reference_scores(tiny_weights.w_out[2], tiny_weights.unembed, None, Projection())[neuron]
        ids = [int(str(cell)) for cell in table.columns[0]._cells]
        assert ids == np.argsort(-scores, kind="stable")[:50].tolist()
        assert ids[: result.top_k] == result.promote_ids[neuron].tolist()
        down = [int(str(cell)) for cell in table.columns[3]._cells]
        assert down == np.argsort(scores, kind="stable")[:50].tolist()
        dots = [float(str(cell)) for cell in table.columns[2]._cells]
        np.testing.assert_allclose(dots, np.round(scores[ids], 3))
        stats = "".join(str(cell) for cell in app.screen.stats_table.columns[0]._cells)
        assert "|W_out[i]|" in stats  # literal, not markup


async def test_reverse_sort_and_the_cursor_always_on_screen(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        skew = app.main.layer_view.result.skew
        for key in ["end", "pageup", "home", "pagedown", "pagedown", "pagedown"] + ["j"] * 30 + ["k"] * 40:
            await pilot.press(key)
            assert cursor_visible(listing), key
        while app.state.sort_key != "skew":
            await pilot.press("s")
        assert listing.cursor == 0 and listing.scroll_offset.y == 0, "a new sort starts at its top"
        await pilot.press("end", "r")
        assert "skew ↑" in status(app) and listing.cursor == 0 and cursor_visible(listing)
        assert np.all(np.diff(skew[listing.order]) >= 0), "ascending skew lists suppression neurons first"
        await pilot.press("end")
        last = listing.current_neuron
        await answer_prompt(pilot, app, "f", "kurtosis>3")
        # The cursor stays on its neuron where it still passes, else it goes to the top.
        kept = app.main.layer_view.result.kurtosis[last] > 3
        assert cursor_visible(listing)
        assert listing.current_neuron == last if kept else listing.cursor == 0


async def test_80_columns_show_every_sort_and_filter_column(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await pilot.press("space")
        await answer_prompt(pilot, app, "f", "kurtosis>2")
        header = str(app.query_one(NeuronList)._header())
        for column in ("neuron", "max-dot", "null-z", "kurt", "class"):
            assert column in header
        assert "skew" not in header
        line = status(app)
        for part in ("Layer 2 / 2", "max-dot ↓", "filter kurtosis>2", "1 marked"):
            assert part in line, line
        assert app.query_one("#histogram").size.height >= 10  # title, axes and 5 rows of bars
        await pilot.resize_terminal(*BIG)
        await pilot.pause()
        assert "skew" in str(app.query_one(NeuronList)._header())
        assert app.main.has_class("-wide") and app.main.has_class("-tall")
        await pilot.resize_terminal(*SMALL)
        await pilot.pause()
        assert app.main.has_class("-narrow") and app.main.has_class("-short"), "re-laid out at once"
        await pilot.press("H")
        await pilot.pause()
        assert app.query_one("#histogram").size.height > 10


async def test_labels_are_literal_and_states_readable_without_colour(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectionScreen))
        dialog = app.screen
        assert "W_out[i]" in str(dialog.query_one("#projection-title").render())
        boxes = list(dialog.query("FlagBox"))
        assert [box.BUTTON_INNER for box in boxes] == [" ", " ", " "]
        await pilot.press("plus")
        assert isinstance(app.screen, ProjectionScreen), "+ ticks; Enter applies"
        assert [box.BUTTON_INNER for box in boxes] == ["X", "X", "X"]
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.state.settings.projection.cosine
        assert (
            "+ promotes (green), − suppresses (red)"
            in "".join(str(app.query_one(NeuronList)._header()) for _ in [0])
            or app.query_one(NeuronList).size.width < 60
        )


async def test_keys_named_as_typed_in_every_view(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=BIG) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = bindings_table(app.binding_groups())
        keys = {str(cell) for cell in table.columns[0]._cells}
        places = {str(cell) for cell in table.columns[2]._cells}
        assert {"]", "[", "/", "?", "ctrl+c", "g", "r", "m", "n", "E"} <= keys
        assert not any("square_bracket" in key or key == "slash" for key in keys)
        assert {
            "collection (m)",
            "all layers (a)",
            "token search (/)",
            "coverage (c)",
            "neuron detail",
        } <= places
        assert "Tab moves between the layer picker and the neuron list" in app.screen.intro
        await pilot.press("escape", "a")
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        table = app.screen.query_one("#all-table")
        start = table.cursor_row
        await pilot.press("k")
        assert table.cursor_row == start - 1
        await pilot.press("j")
        assert table.cursor_row == start
        await pilot.press("escape", "ctrl+c")
        await wait_for(pilot, lambda: not app.is_running)


class _HeldScores(NeuronEngine):
    """Exact score rows (and the layer's input side, also read from the weights) wait until the
    test lets them through, so the test sees the detail as it is before the model could have
    loaded."""

    def __init__(self, options) -> None:
        super().__init__(options)
        self.scores_open = threading.Event()

    def neuron_scores(self, layer, neuron, settings):
        self.scores_open.wait()
        return super().neuron_scores(layer, neuron, settings)

    def inputs(self, layer, settings):
        self.scores_open.wait()
        return super().inputs(layer, settings)


async def test_the_detail_histogram_comes_from_the_cache_without_the_model(tiny_gguf, tiny_weights, tmp_path):
    from engine.data.score_histogram import BINS_PER_SIGN
    from tests.helpers.exactness import reference_histogram_bins

    cache = tmp_path / "c"
    first = make_app(tiny_gguf, cache)
    async with first.run_test(size=BIG) as pilot:
        await settle(pilot, first)  # every layer cached
    app = make_app(tiny_gguf, cache, engine_class=_HeldScores)
    try:
        async with app.run_test(size=BIG) as pilot:
            await wait_for(pilot, lambda: showing(app, 2))
            neuron = app.query_one(NeuronList).current_neuron
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
            detail = app.screen
            assert not app.engine.source_loaded  # a warm start: nothing has opened the model
            centres, counts = detail.histogram
            assert counts.sum() == pytest.approx(tiny_weights.unembed.shape[1])
            scores = reference_scores(tiny_weights.w_out[2], tiny_weights.unembed, None, Projection())[neuron]
            assert centres.min() > scores.min() and centres.max() < scores.max()
            stored = app.main.layer_view.result.score_hist[neuron]
            top = app.main.layer_view.result.score_hist_top
            expected = np.bincount(
                reference_histogram_bins(scores - scores.mean(), top), minlength=2 * BINS_PER_SIGN
            )
            assert np.abs(stored - expected).sum() <= 2
            app.engine.scores_open.set()
            await wait_for(pilot, lambda: detail.scores_settled)
            assert detail.lists_table.row_count == 50
    finally:
        app.engine.scores_open.set()
