"""The explorer on a model of experts: the expert picker, } and { (in a burst too), go-to by
L12/E5/N301, and every view naming the expert."""

from __future__ import annotations

import pytest

from tests.helpers.app import burst_read, make_app, settle, wait_for
from tests.helpers.moe_models import write_moe_checkpoint
from tui.screens.detail import NeuronDetailScreen
from tui.widgets.expert_picker import ExpertPicker


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return write_moe_checkpoint(tmp_path_factory.mktemp("moe") / "qwen2", "qwen2_moe")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return write_moe_checkpoint(tmp_path_factory.mktemp("moe") / "qwen3", "qwen3_moe")


async def test_the_expert_picker_lists_one_expert_at_a_time(qwen2, tmp_path):
    app = make_app(qwen2, tmp_path / "cache")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        view = app.main.layer_view
        picker = app.main.query_one(ExpertPicker)
        assert picker.display and picker.option_count == 1 + 5  # all, E0-E3, the shared expert
        assert len(view.listing.order) == 44
        await burst_read(pilot, app, "}", "}")
        assert app.state.expert == 1
        assert sorted(view.listing.order.tolist()) == list(range(8, 16))  # E1's neurons
        assert "layer 2 E1: max-dot of 8 neurons" in view.query_one("#histogram").title
        assert view.listing._row(0).plain.split()[0].startswith("E1/")
        # Back past the first expert: all of them again; the shared expert last.
        await burst_read(pilot, app, "{", "{", "{")
        assert app.state.expert is None and len(view.listing.order) == 44
        for _ in range(5):
            await burst_read(pilot, app, "}")
        assert app.state.expert == "shared" and len(view.listing.order) == 12


async def test_go_to_an_expert_neuron_lists_its_expert_and_the_detail_names_it(qwen2, tmp_path):
    app = make_app(qwen2, tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await burst_read(pilot, app, "}")  # E0 listed
        await burst_read(pilot, app, "g", "L1/E3/N5", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert app.state.expert == 3 and app.state.layer == 1
        assert app.main.layer_view.listing.current_neuron == 3 * 8 + 5
        title = app.screen.query_one("#detail-title")
        await wait_for(pilot, lambda: str(title.render()) != "")
        assert str(title.render()).startswith("L1/E3/N5")


async def test_a_dense_layer_among_experts_hides_the_picker_and_refuses_expert_refs(qwen3, tmp_path):
    app = make_app(qwen3, tmp_path / "cache")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        picker = app.main.query_one(ExpertPicker)
        assert picker.display
        await burst_read(pilot, app, "g", "L0/N3", "enter")
        await wait_for(pilot, lambda: app.main.layer_view.result.layer == 0)
        assert not picker.display and app.main.layer_view.listing.current_neuron == 3
        await burst_read(pilot, app, "}")  # no experts here: nothing happens
        assert app.state.expert is None and len(app.main.layer_view.listing.order) == 24


async def test_all_layers_and_token_search_name_experts(qwen2, tmp_path):
    from textual.widgets import DataTable

    from tui.screens.all_layers import AllLayersScreen
    from tui.screens.token_search import TokenSearchScreen

    app = make_app(qwen2, tmp_path / "cache")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await burst_read(pilot, app, "a")
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        table = app.screen.query_one(DataTable)
        assert str(table.get_cell_at((1, 0))).startswith("L1 4E+S")
        await burst_read(pilot, app, "escape", "slash", "o", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenSearchScreen))
        hits = app.screen.query_one("#neuron-hits", DataTable)
        await wait_for(pilot, lambda: hits.row_count > 0)
        cells = [str(hits.get_cell_at((row, 1))) for row in range(hits.row_count)]
        assert all(cell.startswith(("E", "S/")) for cell in cells), cells
