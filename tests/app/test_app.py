"""The explorer driven with Textual's Pilot: every key, export contents, hostile tokens, errors."""

from __future__ import annotations

import csv
import json

import numpy as np

from engine.data.tokens import display_token
from tests.helpers.app import GatedEngine, make_app, settle, showing, wait_for
from tui.screens.detail import NeuronDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.prompt import PromptScreen
from tui.widgets.neuron_list import NeuronList

SIZE = (120, 40)


def status_text(app) -> str:
    return str(app.query_one("#status-text").render())


async def test_starts_on_last_layer_with_the_list_focused(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert "Layer 2 / 2" in status_text(app)
        assert isinstance(app.focused, NeuronList)
        neurons = app.query_one(NeuronList)
        assert len(neurons.order) == 96
        assert np.all(np.diff(app.main.layer_view.result.max_dot[neurons.order]) <= 0), (
            "sorted by max-dot, descending"
        )


async def test_layer_keys_move_between_layers(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("[")
        await wait_for(
            pilot, lambda: app.main.layer_view.result is not None and app.main.layer_view.result.layer == 1
        )
        assert "Layer 1 / 2" in status_text(app)
        await pilot.press("[", "[", "[")
        await wait_for(
            pilot, lambda: app.main.layer_view.result is not None and app.main.layer_view.result.layer == 0
        )
        assert app.state.layer == 0
        await pilot.press("]")
        await wait_for(
            pilot, lambda: app.main.layer_view.result is not None and app.main.layer_view.result.layer == 1
        )
        assert "Layer 1 / 2" in status_text(app)


async def test_cursor_keys_and_marks(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        neurons = app.query_one(NeuronList)
        first = neurons.current_neuron
        await pilot.press("j", "down")
        assert neurons.cursor == 2
        await pilot.press("k")
        assert neurons.cursor == 1
        await pilot.press("up")
        assert neurons.current_neuron == first
        await pilot.press("space", "space")
        assert neurons.marked == set(neurons.order[:2].tolist())
        assert "2 marked" in status_text(app)
        await pilot.press("up", "space")  # unmark the second
        assert neurons.marked == {first}
        await pilot.press("end")
        assert neurons.cursor == 95
        await pilot.press("home")
        assert neurons.cursor == 0


async def test_export_writes_exactly_the_marked_neurons(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c", export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        neurons = app.query_one(NeuronList)
        chosen = neurons.order[:2].tolist()
        await pilot.press("space", "space", "e")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        field = app.screen.query_one("Input")
        assert field.value == str(tmp_path / "neurons-collection.csv")
        assert "2 neurons from 1 layer" in str(app.screen.query_one("#prompt-title").render())
        await pilot.press("enter")
        target = tmp_path / "neurons-collection.csv"
        await wait_for(pilot, target.exists)
        rows = list(csv.DictReader(target.open(newline="")))
        assert sorted(int(r["neuron"]) for r in rows) == sorted(chosen)
        result = app.engine.cached_layer(2, app.state.settings)
        for row in rows:
            neuron = int(row["neuron"])
            assert float(row["max_dot"]) == result.max_dot[neuron]
            assert int(row["token_id_1"]) == result.top_ids[neuron, 0]
            assert float(row["dot_1"]) == result.top_dots[neuron, 0]


async def test_export_without_marks_writes_the_listed_neurons_as_jsonl(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c", export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"kurtosis>3.3", "enter")
        listed = app.query_one(NeuronList).listed_neurons
        assert 0 < len(listed) < 96
        await pilot.press("E")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        field = app.screen.query_one("Input")
        field.value = str(tmp_path / "listed.jsonl")
        await pilot.press("enter")
        await wait_for(pilot, (tmp_path / "listed.jsonl").exists)
        records = [json.loads(line) for line in (tmp_path / "listed.jsonl").read_text().splitlines()]
        assert [r["neuron"] for r in records] == listed
        assert all(r["kurtosis"] > 3.3 for r in records)
        assert records[0]["settings"]["projection"] == "raw"


async def test_sort_and_filter(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        neurons = app.query_one(NeuronList)
        await pilot.press("s")
        assert app.state.sort_key == "neuron" and neurons.listed_neurons == list(range(96))
        await pilot.press("s")
        assert app.state.sort_key == "null_z"
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        threshold = float(np.median(app.main.layer_view.result.max_dot))
        await pilot.press(*f"{threshold}", "enter")
        assert all(app.main.layer_view.result.max_dot[n] >= threshold for n in neurons.listed_neurons)
        assert len(neurons.listed_neurons) == int((app.main.layer_view.result.max_dot >= threshold).sum())
        assert "filter" in status_text(app)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"nonsense", "enter")  # a bad filter is reported, the old one stays
        assert len(neurons.listed_neurons) < 96
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("Input").value = ""
        await pilot.press("enter")
        assert len(neurons.listed_neurons) == 96


async def test_detail_view_and_back(tiny_gguf, tiny_weights, tmp_path):
    from engine.settings import Projection
    from tests.helpers.reference import reference_scores

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        neuron = app.query_one(NeuronList).current_neuron
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert app.screen.neuron == neuron
        await wait_for(pilot, lambda: app.screen.scores_settled)
        expected = reference_scores(tiny_weights.w_out[2], tiny_weights.unembed, None, Projection())[neuron]
        np.testing.assert_allclose(app.screen.scores, expected, rtol=1e-12)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, NeuronDetailScreen))
        assert isinstance(app.focused, NeuronList)


async def test_help_comes_from_the_bindings(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        from tui.screens.help import bindings_table

        table = bindings_table(app.binding_groups())
        descriptions = {str(cell) for cell in table.columns[1]._cells}
        for binding in app.BINDINGS + NeuronList.BINDINGS:
            if binding.description:
                assert binding.description in descriptions
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_histogram_toggle_and_quit(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        histogram = app.query_one("#histogram")
        await pilot.press("h")
        assert histogram.sorted_curve
        await pilot.press("h")
        assert not histogram.sorted_curve
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)


async def test_hostile_tokens_render_literally(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(400, 40)) as pilot:
        await settle(pilot, app)
        neurons = app.query_one(NeuronList)
        vocab = app.state.vocab
        hostile = {vocab.texts.index(t) for t in ("[/]", "\x1b[31m", "a\nb", "[bold]x")}
        seen = set()
        for layer in range(3):
            await pilot.press("[" if layer else "home")
        for layer in (2, 1, 0):
            app.main.layer_view.show_layer(layer)
            await wait_for(pilot, lambda layer=layer: showing(app, layer))
            for row in range(len(neurons.order)):
                text = neurons._row(row)
                neuron = int(neurons.order[row])
                for token_id in set(app.main.layer_view.result.top_ids[neuron, :10].tolist()) & hostile:
                    shown = display_token(vocab.text(token_id))
                    assert shown in text.plain
                    assert not text.spans or all("\x1b" not in str(span.style) for span in text.spans)
                    seen.add(token_id)
        assert seen, "no hostile token reached a top list; the fixture should make some"
        assert "\x1b" not in "".join(neurons._row(r).plain for r in range(len(neurons.order)))


async def test_worker_error_is_shown_not_raised(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c", device="cuda")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.status.activity.startswith("error"))
        assert "CUDA is not available" in app.main.status.activity
        assert app.is_running


async def test_keys_never_wait_for_a_scan(tiny_gguf, tmp_path):
    """Every key takes effect while a layer's scan is held mid-computation in its worker: the
    event loop never waits for a scan, on a fast machine or a loaded one."""
    app = make_app(tiny_gguf, tmp_path / "c", engine_class=GatedEngine)
    engine = app.engine
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: engine.held == 2)
        engine.release(2)
        await wait_for(pilot, lambda: showing(app, 2) and engine.held == 1)  # layer 1 is now held
        neurons = app.query_one(NeuronList)
        checks = [
            ("j", lambda before: neurons.cursor == before + 1, lambda: neurons.cursor),
            ("[", lambda before: app.state.layer == before - 1, lambda: app.state.layer),
            ("]", lambda before: showing(app, before + 1), lambda: app.state.layer),
            ("s", lambda before: app.state.sort_key != before, lambda: app.state.sort_key),
            (
                "h",
                lambda before: app.query_one("#histogram").sorted_curve != before,
                lambda: app.query_one("#histogram").sorted_curve,
            ),
        ]
        for key, done, state in checks:
            before = state()
            await pilot.press(key)
            await wait_for(pilot, lambda done=done, before=before: done(before))
            assert engine.held is not None, f"{key!r} should land while a scan is held"
            assert app.main.status.activity.startswith("computing layer")
        engine.release_all()
        await settle(pilot, app)


async def test_all_layers_view_fills_in_and_jumps(tiny_gguf, tmp_path):
    from tui.screens.all_layers import AllLayersScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        screen = app.screen
        assert sorted(screen.summaries) == [0, 1, 2]
        summary = screen.summaries[1]
        expected = app.engine.cached_layer(1, app.state.settings).max_dot
        assert summary.max == expected.max() and summary.p50 == float(np.quantile(expected, 0.5))
        await pilot.press("up", "up", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, AllLayersScreen))
        await wait_for(
            pilot, lambda: app.main.layer_view.result is not None and app.main.layer_view.result.layer == 0
        )


async def test_all_layers_view_shows_pending_layers(tiny_gguf, tmp_path):
    from tui.screens.all_layers import AllLayersScreen

    app = make_app(tiny_gguf, tmp_path / "c", engine_class=GatedEngine)
    engine = app.engine
    async with app.run_test(size=SIZE) as pilot:
        engine.release(2)
        await wait_for(pilot, lambda: 2 in app.state.summaries and engine.held is not None)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        screen = app.screen
        assert sorted(screen.summaries) == [2], "layers 0 and 1 are still pending"
        table = screen.query_one("DataTable")
        assert str(table.get_cell_at((0, 1))) == str(table.get_cell_at((1, 1))) == "pending"
        engine.release_all()
        await wait_for(pilot, lambda: len(screen.summaries) == 3)
        assert str(table.get_cell_at((0, 1))) != "pending"
        assert float(str(table.get_cell_at((0, 1)))) == round(app.state.summaries[0].p50, 3)


async def test_projection_switch_recomputes_and_reads_the_cache(tiny_gguf, tmp_path):
    from engine.settings import Projection, ScanSettings
    from tui.screens.projection import ProjectionScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        raw_max = app.main.layer_view.result.max_dot.copy()
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectionScreen))
        await pilot.press("plus", "enter")
        await settle(pilot, app)
        gurnee = Projection(True, True, True)
        assert app.state.settings.projection == gurnee
        assert "fold+center+cosine" in status_text(app)
        expected = app.engine.cached_layer(2, ScanSettings(projection=gurnee))
        np.testing.assert_array_equal(app.main.layer_view.result.max_dot, expected.max_dot)
        assert app.main.layer_view.result.max_dot.max() <= 1.0 + 1e-12  # cosine similarities
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectionScreen))
        await pilot.press("minus", "enter")
        await settle(pilot, app)
        np.testing.assert_array_equal(app.main.layer_view.result.max_dot, raw_max)


async def test_p_switches_to_the_fitted_jacobian_lens_and_back(tiny_gguf, tiny_weights, tmp_path):
    import torch
    from transformer_lens.tools.analysis import JacobianLens

    from engine.lens.store import fitted_lens_path
    from engine.settings import Projection
    from tests.helpers.exactness import assert_layer_matches
    from tests.helpers.reference import reference_layer
    from tui.screens.projection import ProjectionScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    generator = torch.Generator().manual_seed(2)
    d_model = tiny_weights.w_out[0].shape[1]
    lens = JacobianLens(
        {
            layer: torch.eye(d_model) + 0.5 * torch.randn((d_model, d_model), generator=generator)
            for layer in (0, 1)
        },
        n_prompts=3,
        d_model=d_model,
    )
    path = fitted_lens_path(app.engine.fingerprint, "jlens-test")
    path.parent.mkdir(parents=True)
    lens.save(str(path), dtype=torch.float32)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        logit_max = app.main.layer_view.result.max_dot.copy()
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectionScreen))
        await pilot.click("#jacobian")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.settings.lens.digest is not None)
        await settle(pilot, app)
        assert "J-lens" in status_text(app)
        await pilot.press("[", "[")
        await wait_for(pilot, lambda: showing(app, 0))
        through = lens.jacobians[0].double().numpy()
        w = tiny_weights.w_out[0].astype(np.float64) @ through.T
        reference = reference_layer(w, tiny_weights.unembed, tiny_weights.final_norm, Projection(), 10, 8)
        assert_layer_matches(app.main.layer_view.result, reference)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectionScreen))
        await pilot.click("#jacobian")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.settings.lens.digest is None)
        await pilot.press("]", "]")
        await wait_for(pilot, lambda: showing(app, 2))
        await settle(pilot, app)
        np.testing.assert_array_equal(app.main.layer_view.result.max_dot, logit_max)


async def test_against_another_checkpoint_shows_the_diff_column_and_its_tokens(tmp_path):
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from tests.helpers.models import write_hf_llama, write_perturbed_copy
    from tui.app import NeuronApp
    from tui.screens.detail import NeuronDetailScreen as Detail

    base = write_hf_llama(tmp_path / "base", n_layers=3, seed=11)
    write_perturbed_copy(base, tmp_path / "tuned", 2, (5,), scale=0.5)
    engine = NeuronEngine(EngineOptions(model=str(base), device="cpu", cache_dir=tmp_path / "c"))
    other = NeuronEngine(EngineOptions(model=str(tmp_path / "tuned"), device="cpu", cache_dir=tmp_path / "c"))
    app = NeuronApp(engine, against=other)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await wait_for(pilot, lambda: 2 in app.state.diffs)
        await wait_for(
            pilot,
            lambda: app.main.layer_view.neurons is not None and app.main.layer_view.neurons.diff is not None,
        )
        listing = app.query_one(NeuronList)
        assert "cos-B" in str(listing._header()) and "base vs tuned" in status_text(app)
        diff = app.state.diffs[2][0]
        assert diff.cosine[5] < 0.999 and np.all(np.delete(diff.cosine, 5) > 1 - 1e-12)
        while app.state.sort_key != "diff_cos":  # s cycles to it: the most turned neuron first
            await pilot.press("s")
        await pilot.pause(0.2)
        assert listing.current_neuron == 5
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, Detail))
        assert "in tuned" in str(app.screen.against_text)
    other.close()


async def test_token_search_finds_a_token_and_jumps_to_its_neuron(tiny_gguf, tiny_weights, tmp_path):
    from engine.settings import Projection
    from tests.helpers.reference import reference_scores
    from tui.screens.token_search import TokenSearchScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenSearchScreen))
        screen = app.screen
        await pilot.press(*"coming")
        await wait_for(
            pilot,
            lambda: (
                len(screen.rows) > 0
                and screen.matches
                and screen.matches[0].text == "coming"
                or any(m.text == " coming" for m in screen.matches)
            ),
        )
        token_id = app.state.vocab.texts.index(" coming")
        screen.show_token(token_id)
        # The best row is the token's best neuron over all layers (the float64 reference agrees).
        best = max(
            (
                (layer, n, d)
                for layer, w in enumerate(tiny_weights.w_out)
                for n, d in enumerate(
                    reference_scores(w, tiny_weights.unembed, None, Projection())[:, token_id]
                )
            ),
            key=lambda hit: abs(hit[2]),
        )
        assert screen.rows[0] == (best[0], best[1])
        table = screen.query_one("#neuron-hits")
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, TokenSearchScreen))
        await wait_for(
            pilot,
            lambda: app.main.layer_view.result is not None and app.main.layer_view.result.layer == best[0],
        )
        assert app.query_one(NeuronList).current_neuron == best[1]


async def test_coverage_view(tiny_gguf, tmp_path):
    from tui.screens.coverage import CoverageScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CoverageScreen))
        screen = app.screen
        assert screen.coverage.layers == [0, 1, 2]
        per_layer = screen.query_one("#per-layer")
        assert per_layer.row_count == 3
        target = screen.targets["best-tokens"][0]
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, CoverageScreen))
        await wait_for(
            pilot,
            lambda: app.main.layer_view.result is not None and app.main.layer_view.result.layer == target[0],
        )
        assert app.query_one(NeuronList).current_neuron == target[1]


async def test_command_palette_lists_the_actions(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        for expected in (
            "Next layer",
            "Export",
            "Sort",
            "Filter",
            "All layers",
            "Token search",
            "Coverage",
            "Mark, next row",
            "Undo mark/note",
            "Detail",
        ):
            assert expected in titles


async def test_a_model_that_cannot_be_opened_ends_the_app_with_exit_2(tmp_path):
    """Its header reads, so the command line lets it through; opening it fails in the worker."""
    import gguf

    path = tmp_path / "no-mlp.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_tensor("token_embd.weight", np.ones((20, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    app = make_app(path, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_code == 2
    assert "ffn_down" in app.fatal_error
