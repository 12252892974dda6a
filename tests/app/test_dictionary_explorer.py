"""A dictionary's features in the explorer, one key (d) away from the neurons: the list, go-to,
the detail with its closest neurons, marks in the dictionary's own collection, the views that read
neurons only, the all-layers comparison and keys typed in one burst. A tiny random Llama and a
sparse autoencoder written by EleutherAI's sparsify at its layer 1 (48 features; 64 neurons)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable

from engine.data.summary import count_one_token
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import NEURONS, ScanSettings
from tests.helpers.app import burst_read, make_app, settle, wait_for
from tests.helpers.dictionaries import write_sparsify
from tui.app import NeuronApp
from tui.screens.all_layers import AllLayersScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.text_probe import TextProbeScreen
from tui.widgets.neuron_list import NeuronList

pytestmark = pytest.mark.xdist_group("explorer")

SIZE = (120, 40)
FEATURES, NEURONS_PER_LAYER = 48, 64


@pytest.fixture(scope="module")
def sparsify(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sparsify")
    write_sparsify(folder, "layers.1", d_in=32, num_latents=FEATURES, k=6)
    return folder


def dictionary_app(model, folder, tmp_path) -> NeuronApp:
    """The explorer as ``--dictionary folder`` opens it: on the dictionary's features."""
    engine = NeuronEngine(EngineOptions(model=str(model), device="cpu", cache_dir=tmp_path / "c"))
    units = engine.open_dictionary([str(folder)])
    return NeuronApp(engine, ScanSettings(units=units), export_dir=tmp_path)


def status(app) -> str:
    return str(app.query_one("#status-text").render())


def listed(app, features: bool) -> bool:
    result = app.main.layer_view.result
    return result is not None and (result.dictionary is not None) == features


def notified(app) -> list[str]:
    return [notification.message for notification in app._notifications]


async def test_d_switches_the_list_between_features_and_neurons(tiny_llama_dir, sparsify, tmp_path):
    app = dictionary_app(tiny_llama_dir, sparsify, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        assert listed(app, True) and len(listing.order) == FEATURES
        assert listing._row(0).plain.split()[0] == f"F{listing.current_neuron}"
        assert "Layer 1 / 1 · features: " in status(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: listed(app, False))
        assert len(listing.order) == NEURONS_PER_LAYER and "· neurons ·" in status(app)
        assert listing._row(0).plain.split()[0] == str(listing.current_neuron)
        await pilot.press("d")
        await wait_for(pilot, lambda: listed(app, True))
        assert len(listing.order) == FEATURES and app.state.layer == 1

        # All layers: of the units standing out, those that look like one token, neurons / features.
        engine, units = app.engine, app.state.dictionary
        await wait_for(pilot, lambda: all(1 in held.summaries for held in app.state.kinds.values()))
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        table = app.screen.query_one(DataTable)
        neurons = count_one_token(engine.neurons(1, ScanSettings()))
        features = count_one_token(engine.neurons(1, ScanSettings(units=units)))
        assert str(table.get_row_at(1)[-1]) == f"{neurons} / {features}"
        assert str(table.get_row_at(0)[-1]).endswith("/ —"), "layer 0 has no dictionary"


async def test_without_a_dictionary_d_says_how_to_open_one(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: bool(notified(app)))
        assert "--dictionary PATH" in notified(app)[-1] and "\n" not in notified(app)[-1]
        assert listed(app, False) and app.state.dictionary is None


async def test_a_features_detail_its_closest_neurons_marks_and_refusals(tiny_llama_dir, sparsify, tmp_path):
    app = dictionary_app(tiny_llama_dir, sparsify, tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot, app)
        units = app.state.dictionary
        await burst_read(pilot, app, "g", "L1/F5", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        detail = app.screen
        assert str(detail.query_one("#detail-title").render()).startswith("L1/F5 (layers.1) · ")
        await wait_for(pilot, lambda: detail.neighbours is not None)
        closest = app.engine.neighbours(1, units, of_features=True).of(5)
        assert detail.neighbours.of(5) == closest
        shown = " ".join(detail.closest_text.plain.split("opens one)")[1].split())
        assert shown == " ".join(f"{rank + 1} L1/N{n} {c:+.3f}" for rank, (n, c) in enumerate(closest))
        assert "layers.1: sae (topk, 48 features) at blocks.1.hook_resid_post" in detail.closest_text.plain

        await pilot.press("space")  # a feature's mark: the dictionary's own collection
        assert [(m.layer, m.neuron) for m in app.engine.collection(units).items()] == [(1, 5)]
        assert not len(app.engine.collection()), "never the neurons' collection"
        await pilot.press("x")  # ablation reads neurons: one line, and no view opens
        assert app.screen is detail and "reads the model's neurons" in notified(app)[-1]

        await pilot.press("1")  # the closest neuron, in the neurons' list, its detail open
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen) and not app.state.features)
        assert app.screen.neuron == closest[0][0] and app.screen.result.dictionary is None
        await pilot.press("escape", "d", "t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextProbeScreen))
        await burst_read(pilot, app, "She said", "enter")
        await wait_for(pilot, lambda: app.screen.firing is not None)
        assert "F" in str(app.screen.query_one(DataTable).get_row_at(1)[3]), "the features fire"
        await pilot.press("w")  # why this token attributes to neurons: refused before it opens
        assert isinstance(app.screen, TextProbeScreen) and "why this token" in notified(app)[-1]

        await burst_read(pilot, app, "escape", "E", "ctrl+u", str(tmp_path / "f.jsonl"), "enter")
        await wait_for(pilot, lambda: (tmp_path / "f.jsonl").exists() and "wrote" in notified(app)[-1])
        record = json.loads((tmp_path / "f.jsonl").read_text().splitlines()[1])
        assert record["dictionary"] == "layers.1" and "feature" in record and "neuron" not in record
        assert len(record["closest_neurons"]) == 5


async def test_keys_typed_in_one_burst_switch_then_go_to_a_feature(tiny_llama_dir, sparsify, tmp_path):
    app = dictionary_app(tiny_llama_dir, sparsify, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: listed(app, False))
        app.state.kinds[app.state.dictionary.digest].results.clear()  # the features' layer on its way
        await burst_read(pilot, app, "d", "g", "5", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert app.screen.neuron == 5 and app.screen.result.dictionary == "layers.1"
        assert app.state.settings.units == app.state.dictionary != NEURONS
