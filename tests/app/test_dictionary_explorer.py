"""A dictionary's features in the explorer, one key (d) away from the neurons: the list, go-to,
the detail with its closest neurons, marks in the dictionary's own collection, the views that read
neurons only, the all-layers comparison and keys typed in one burst. A tiny random Llama and a
sparse autoencoder written by EleutherAI's sparsify at its layer 1 (48 features; 64 neurons)."""

from __future__ import annotations

import json

import pytest
from textual.app import App
from textual.signal import Signal
from textual.widgets import DataTable, Input

from engine.activations.documents import Corpus
from engine.data.summary import LayerSummary, count_one_token
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import NEURONS, ActivationSettings, ScanSettings
from tests.engine.test_activations import random_documents
from tests.helpers.app import burst_read, make_app, settle, wait_for
from tests.helpers.dictionaries import write_sparsify
from tui.app import NeuronApp
from tui.screens.all_layers import AllLayersScreen, SideBySide
from tui.screens.coverage import CoverageScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.neuron_probe import NeuronProbeScreen
from tui.screens.text_probe import TextProbeScreen
from tui.widgets.neuron_list import NeuronList
from tui.widgets.title_bar import TitleBar

pytestmark = pytest.mark.xdist_group("explorer")

SIZE = (120, 40)
FEATURES, NEURONS_PER_LAYER = 48, 64


@pytest.fixture(scope="module")
def sparsify(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sparsify")
    write_sparsify(folder, "layers.1", d_in=32, num_latents=FEATURES, k=6)
    return folder


def dictionary_app(model, folder, tmp_path, **options) -> NeuronApp:
    """The explorer as ``--dictionary folder`` opens it: on the dictionary's features."""
    engine = NeuronEngine(EngineOptions(model=str(model), device="cpu", cache_dir=tmp_path / "c"))
    units = engine.open_dictionary([str(folder)])
    return NeuronApp(engine, ScanSettings(units=units), export_dir=tmp_path, **options)


def status(app) -> str:
    return str(app.query_one("#status-text").render())


def listed(app, features: bool) -> bool:
    result = app.main.layer_view.result
    return result is not None and (result.dictionary is not None) == features


def notified(app) -> list[str]:
    return [notification.message for notification in app._notifications]


def offered_keys(screen) -> dict[str, str]:
    """What the screen's footer offers: each key and its description."""
    return {key: active.binding.description for key, active in screen.active_bindings.items()}


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
        await pilot.press("escape", "c")  # coverage: a feature's direction is its decoder row
        await wait_for(pilot, lambda: isinstance(app.screen, CoverageScreen))
        assert "|W_dec[i]|" in str(app.screen.query_one("#coverage-title").render())


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
        footer = offered_keys(detail)
        assert footer["right"] == "Next feature" and "x" not in footer, "x only refuses on a feature"
        await pilot.press("x")  # ablation reads neurons: one line, and no view opens
        assert app.screen is detail and "reads the model's neurons" in notified(app)[-1]
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronProbeScreen))
        assert "this feature" in app.screen.query_one(Input).placeholder
        await pilot.press("escape")

        await pilot.press("1")  # the closest neuron, in the neurons' list, its detail open
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen) and not app.state.features)
        assert app.screen.neuron == closest[0][0] and app.screen.result.dictionary is None
        assert offered_keys(app.screen)["right"] == "Next neuron" and "x" in offered_keys(app.screen)
        await pilot.press("escape")  # back where it was opened from: the feature, among the features
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen) and app.screen.neuron == 5)
        assert app.screen.result.dictionary == "layers.1" and app.state.features
        await pilot.press("escape", "t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextProbeScreen))
        await burst_read(pilot, app, "She said", "enter")
        await wait_for(pilot, lambda: app.screen.firing is not None)
        assert "F" in str(app.screen.query_one(DataTable).get_row_at(1)[3]), "the features fire"
        scale = str(app.screen.query_one("#probe-scale").render())
        assert "the feature's" in scale and "neuron" not in scale
        assert "w" not in offered_keys(app.screen)
        await pilot.press("w")  # why this token attributes to neurons: refused before it opens
        assert isinstance(app.screen, TextProbeScreen) and "why this token" in notified(app)[-1]

        await burst_read(pilot, app, "escape", "E", "ctrl+u", str(tmp_path / "f.jsonl"), "enter")
        await wait_for(pilot, lambda: (tmp_path / "f.jsonl").exists() and "wrote" in notified(app)[-1])
        record = json.loads((tmp_path / "f.jsonl").read_text().splitlines()[1])
        assert record["dictionary"] == "layers.1" and "feature" in record and "neuron" not in record
        assert len(record["closest_neurons"]) == 5


async def test_a_features_evidence_has_no_negative_pole_and_its_title_fits(
    tiny_llama_dir, sparsify, tmp_path
):
    settings = ActivationSettings(context=16, examples=2, lift_positions=8, batch_tokens=64)
    corpus = Corpus("random", random_documents(5, count=4))
    app = dictionary_app(tiny_llama_dir, sparsify, tmp_path, activation=settings, corpus=corpus)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await burst_read(pilot, app, "g", "L1/F5", "enter", "enter", "A")  # the detail's own pass
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        detail = app.screen
        await wait_for(pilot, lambda: detail.reading is not None and detail.reading.complete)
        stats = " ".join(str(cell) for column in detail.stats_table.columns for cell in column._cells)
        assert "mean attribution (−)" in stats and "nan" not in stats, "unknown: —"
        assert "features do not take negative values" in detail.evidence_text.plain
        assert "never fires with this sign" not in detail.evidence_text.plain
        await pilot.resize_terminal(50, 24)  # the title gives way: the position, then the layers
        title = detail.query_one("#detail-title", TitleBar)
        await wait_for(pilot, lambda: title.content_size.width == 48)
        assert str(title.render()) == f"L1/F5 (layers.1) · tiny-llama · {detail.order.index(5) + 1}/48"


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


class AllLayersApp(App):
    """The all-layers view alone, as the explorer opens it on a dictionary's features at layer 20
    of 30 (its one layer in, no feature with kurtosis > 10), with a model and a set of long names."""

    SET = "sae-resid-L20-x1152-k16-c64-m8000-b4-s0-adam0.003-0123456789ab"

    def on_mount(self) -> None:
        summary = LayerSummary(20, 1152, 0.1, 0.3, 0.1, 0.2, 0.25, 3.0, 5.0, 0, 0, 0)
        side = SideBySide({}, {20: summary}, {20})
        screen = AllLayersScreen(
            "SmolLM2-135M-Instruct",
            "fold+center+cosine",
            30,
            {20: summary},
            20,
            Signal(self, "added"),
            f"features: {self.SET}",
            side,
            projection_short="f+c+cos",
        )
        self.push_screen(screen)


@pytest.mark.parametrize("width", [80, 120])
async def test_all_layers_names_the_set_and_opens_around_its_layer(width):
    app = AllLayersApp()
    async with app.run_test(size=(width, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        screen = app.screen
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.scroll_y > 0)
        title = str(screen.query_one("#all-title").render())
        assert "all 30 layers · features: sae-resid-L20" in title and len(title) <= width - 2
        rows = table.scrollable_content_region.height - table.header_height
        assert table.scroll_y < 20 < table.scroll_y + rows - 1, "layer 20 with the layers around it"
        axis = str(screen.query_one("#classes-by-layer").render())
        ticks = [float(line.split("┤")[0]) for line in axis.splitlines() if "┤" in line]
        assert min(ticks) == 0, "counts: from 0"
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == 29
