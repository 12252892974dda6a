"""Evidence on demand in the explorer: the detail's own pass fills examples while it reads and
keeps them when stopped; a steered full pass lands each layer's evidence before it ends; the probe
of one neuron; space and n in every view that shows a neuron."""

from __future__ import annotations

import contextlib

import numpy as np

from engine.activations.documents import Corpus
from engine.neuron_engine import EngineOptions
from engine.settings import ActivationSettings, ScanSettings
from tests.engine.test_activations import random_documents
from tests.helpers.app import PassGatedEngine, settle, wait_for
from tui.app import NeuronApp
from tui.screens.detail import NeuronDetailScreen

SETTINGS = ActivationSettings(context=16, examples=4, lift_positions=8, batch_tokens=32)
CORPUS = Corpus("random", random_documents(5, count=10))


def _app(model_dir, tmp_path) -> NeuronApp:
    engine = PassGatedEngine(EngineOptions(model=str(model_dir), device="cpu", cache_dir=tmp_path / "cache"))
    return NeuronApp(engine, ScanSettings(top_k=20), activation=SETTINGS, corpus=CORPUS)


@contextlib.contextmanager
def _gate_opens_at_the_end(app: NeuronApp):
    """A failed assertion must not leave a pass waiting at the gate (the app would never close)."""
    try:
        yield
    finally:
        app.engine.gate.set()


@contextlib.asynccontextmanager
async def _async(app: NeuronApp):
    with _gate_opens_at_the_end(app):
        yield


def _examples_shown(screen: NeuronDetailScreen) -> int:
    return screen.evidence_text.plain.count("⟦")


async def _open_detail(pilot, app) -> NeuronDetailScreen:
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
    return app.screen


async def test_the_details_pass_shows_examples_while_reading_and_keeps_them_when_stopped(
    tiny_llama_dir, tmp_path
):
    app = _app(tiny_llama_dir, tmp_path)
    engine = app.engine
    async with app.run_test(size=(120, 40)) as pilot, _async(app):
        await settle(pilot, app)
        detail = await _open_detail(pilot, app)
        layer = detail.result.layer
        assert "not read yet" in detail.evidence_text.plain
        await pilot.press("A")
        # The pass waits at the gate after its first landing: the examples are on screen while it reads.
        await wait_for(pilot, lambda: detail.reading is not None)
        assert not detail.reading.complete and detail.pass_running()
        assert _examples_shown(detail) >= 5  # both poles' examples of this neuron
        assert f"{detail.reading.read:,} of {detail.reading.of:,} tokens read" in detail.evidence_text.plain
        activity = str(detail.query_one("#detail-activity").render())
        assert f"reading text for L{layer}" in activity and "A stops" in activity
        await pilot.press("A")  # stop
        engine.gate.set()
        await wait_for(pilot, lambda: not detail.pass_running())
        await wait_for(pilot, lambda: "stopped" in str(detail.query_one("#detail-activity").render()))
        read = detail.reading.read
        assert not detail.reading.complete
        # The list got the evidence too, and a second open shows it (from the cache after a restart).
        await pilot.press("escape")
        assert app.state.readings[layer].read == read
        detail = await _open_detail(pilot, app)
        assert detail.reading.read == read and _examples_shown(detail) >= 5
    found = engine.best_evidence(layer, CORPUS.content_hash, SETTINGS, ScanSettings(top_k=20))
    assert found is not None and found[1].read == read and not found[1].complete

    again = _app(tiny_llama_dir, tmp_path)
    async with again.run_test(size=(120, 40)) as pilot, _async(again):
        await settle(pilot, again)
        await wait_for(pilot, lambda: layer in again.state.readings)
        detail = await _open_detail(pilot, again)
        assert detail.reading.read == read and _examples_shown(detail) >= 5
        again.engine.gate.set()
        events = []
        original = again.engine.corpus_pass

        def spy(*args, **kwargs):
            listener = kwargs["listener"]
            kwargs["listener"] = lambda p: (events.append(p), listener(p))
            return original(*args, **kwargs)

        again.engine.corpus_pass = spy
        await pilot.press("A")  # resumes where it stopped, and reads to the end
        await wait_for(pilot, lambda: detail.reading.complete)
        assert [e.done_tokens for e in events if e.stage == "resuming"] == [read]


async def test_a_full_pass_with_a_cap_lands_evidence_before_it_ends_and_stops_on_A(tiny_llama_dir, tmp_path):
    from tui.screens.confirm import ConfirmScreen
    from tui.screens.pass_dialog import PassDialog

    app = _app(tiny_llama_dir, tmp_path)
    engine = app.engine
    async with app.run_test(size=(120, 40)) as pilot, _async(app):
        await settle(pilot, app)
        layer = app.state.layer
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, PassDialog))
        dialog = app.screen
        dialog.query_one("Input").value = "lots"
        await pilot.press("down", "enter")  # all layers; a cap that is not a number
        assert "whole number" in str(dialog.query_one("#pass-error").render()) and app.screen is dialog
        dialog.query_one("Input").value = "160"
        await pilot.press("enter")
        await wait_for(pilot, lambda: layer in app.state.readings)
        reading = app.state.readings[layer]
        assert (reading.cap, reading.of, reading.complete) == (160, 160, False)
        assert app.main.layer_view.neurons.lift is not None  # in the list while the pass still reads
        assert "A stops" in app.main.status.activity
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")
        engine.gate.set()
        await wait_for(pilot, lambda: "stopped" in app.main.status.activity)
        assert {reading.cap for _, reading in engine.landings} == {160}
        assert {landed for landed, _ in engine.landings} == set(range(app.state.n_layers))


async def test_the_probe_of_one_neuron_shows_its_activation_on_every_token(tiny_llama_dir, tmp_path):
    import torch

    from tui.screens.neuron_probe import NeuronProbeScreen
    from tui.screens.text_probe import TextProbeScreen

    app = _app(tiny_llama_dir, tmp_path)
    text = "hello there, hello"
    async with app.run_test(size=(120, 40)) as pilot, _async(app):
        await settle(pilot, app)
        detail = await _open_detail(pilot, app)
        layer, neuron = detail.result.layer, detail.neuron
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronProbeScreen))
        probe = app.screen
        await pilot.press(*text, "enter")
        await wait_for(pilot, lambda: probe.values is not None)

        bridge, tokenizer, _ = app.engine.activation_model()
        captured = {}
        model = bridge.original_model
        hook = model.model.layers[layer].mlp.down_proj.register_forward_hook(
            lambda m, i, o: captured.__setitem__("act", i[0][0])  # returns None: the output stays
        )
        with torch.no_grad():
            model(torch.tensor([tokenizer(text)["input_ids"]]))
        hook.remove()
        expected = captured["act"][:, neuron].double().numpy()
        np.testing.assert_allclose(probe.values, expected, rtol=1e-5, atol=1e-6)
        table = probe.query_one("DataTable")
        rows = [[str(cell) for cell in table.get_row_at(r)] for r in range(table.row_count)]
        assert rows[0][0] == "0*"  # position 0: shown, marked
        assert all(row[0] == str(p) for p, row in enumerate(rows) if p > 0)
        result = app.state.results[layer]
        for value, row in zip(expected, rows):
            glyphs = set(row[3]) - {"»"}
            assert glyphs == ({"█"} if value > 0 else {"░"} if value < 0 else {"·"})  # sign without colour
            promoted = result.promote_ids[neuron, 0] if value > 0 else result.suppress_ids[neuron, 0]
            assert row[4] == "—" or row[4] == str(app.state.vocab.text(int(promoted))) or row[4]
        unmarked = np.abs(expected[1:]).max()
        assert max(len(row[3].rstrip("»")) for row in rows[1:]) == 24  # bars to the unmarked maximum
        assert unmarked > 0
        await pilot.press("space")
        assert neuron in app.state.collection.in_layer(layer)
        await pilot.press("escape", "escape", "t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextProbeScreen))
        probe = app.screen
        await pilot.press(*text, "enter")
        await wait_for(pilot, lambda: probe.firing is not None)
        assert probe.rows[0] is None  # position 0 is not ranked
        await pilot.press("down", "enter")  # position 1's hardest-firing neuron, on the same text
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronProbeScreen))
        one = app.screen
        await wait_for(pilot, lambda: one.values is not None)
        assert one.neuron == probe.rows[1][1] and one.probed_layer == probe.rows[1][0]
        assert float(one.values[1]) == float(probe.firing.activations[1, 0, 0])


async def test_space_and_n_mark_and_note_in_every_view_that_shows_a_neuron(tiny_llama_dir, tmp_path):
    from tui.screens.coverage import CoverageScreen
    from tui.screens.prompt import PromptScreen
    from tui.screens.token_search import TokenSearchScreen

    app = _app(tiny_llama_dir, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot, _async(app):
        await settle(pilot, app)
        collection = app.state.collection
        detail = await _open_detail(pilot, app)
        layer, neuron = detail.result.layer, detail.neuron
        await pilot.press("space")
        assert neuron in collection.in_layer(layer)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"looks like a copy head", "enter")
        assert collection.note(layer, neuron) == "looks like a copy head"
        await pilot.press("escape")
        assert neuron in app.main.query_one("NeuronList").marked  # the list shows it at once

        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenSearchScreen))
        search = app.screen
        await pilot.press("a")
        await wait_for(pilot, lambda: bool(search.rows))
        await pilot.press("enter", "enter", "space")  # to the matches, to its neurons; space marks the row
        target = search.rows[search.query_one("#neuron-hits").cursor_row]
        assert target[1] in collection.in_layer(target[0])
        await pilot.press("escape")

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CoverageScreen))
        coverage = app.screen
        target = coverage.marking_target()
        assert target is not None
        before = target[1] in collection.in_layer(target[0])
        await pilot.press("space")
        assert (target[1] in collection.in_layer(target[0])) != before
