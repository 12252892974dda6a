"""Why this token, in the explorer: w on a position of the text probe lists the neurons that pushed
the predicted token up and down most (the engine's attribution, which tests/engine holds against
float64 by hand), Enter opens one's detail, and x there ablates it on the probed text. Long runs
show their progress and stop when their view is left; keys typed ahead in one burst are read in
order."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from textual.widgets import DataTable, Input

from engine.neuron_engine import EngineOptions, NeuronEngine
from tests.helpers.app import burst_read, settle, wait_for
from tui.app import NeuronApp
from tui.screens.ablation import AblationScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.main import MainScreen
from tui.screens.text_probe import PER_LAYER, TextProbeScreen
from tui.screens.why_token import WhyTokenScreen

pytestmark = pytest.mark.xdist_group("explorer")
TEXT = "hello there, she said"
POSITION = 3


def _app(model_dir, tmp_path, engine_class: type[NeuronEngine] = NeuronEngine) -> NeuronApp:
    from engine.settings import ScanSettings

    engine = engine_class(EngineOptions(model=str(model_dir), device="cpu", cache_dir=tmp_path / "cache"))
    return NeuronApp(engine, ScanSettings())


async def _probed(pilot, app: NeuronApp) -> TextProbeScreen:
    await pilot.press("t")
    await wait_for(pilot, lambda: isinstance(app.screen, TextProbeScreen))
    probe = app.screen
    await pilot.press(*TEXT, "enter")
    await wait_for(pilot, lambda: probe.firing is not None)
    return probe


async def test_why_this_token_lists_the_attribution_and_opens_a_neuron_then_ablates_it(
    tiny_llama_dir, tmp_path
):
    app = _app(tiny_llama_dir, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        probe = await _probed(pilot, app)
        row = 1 + PER_LAYER * (POSITION - 1)  # position 0 is one marked row, the others three each
        probe.query_one(DataTable).move_cursor(row=row)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WhyTokenScreen) and app.screen.found is not None)
        why = app.screen
        expected = app.engine.attribute(TEXT, [0, 1], 10)
        plus, minus = expected.neurons(POSITION), expected.neurons(POSITION, against=True)
        assert why.position == POSITION
        assert why.rows == [(e.layer, e.neuron) for e in plus + minus]
        table = why.query_one(DataTable)
        cells = [[str(cell) for cell in table.get_row_at(r)] for r in range(table.row_count)]
        assert cells[0][:4] == [
            "+",
            f"L{plus[0].layer}/N{plus[0].neuron}",
            f"{plus[0].activation:+.3f}",
            f"{plus[0].dla:+.4f}",
        ]
        assert cells[len(plus)][0] == "−" and cells[len(plus)][3] == f"{minus[0].dla:+.4f}"
        predicted = app.state.vocab.text(int(expected.target_ids[POSITION]))
        assert predicted.strip() in str(why.query_one("#why-head").render())

        await pilot.press("down", "enter")  # the second neuron up: its detail, through the list
        chosen = why.rows[1]
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        detail = app.screen
        assert (detail.result.layer, detail.neuron) == chosen
        assert app.state.probed_text == TEXT

        await pilot.press("x")  # ablate it on the probed text, at once
        await wait_for(pilot, lambda: isinstance(app.screen, AblationScreen) and app.screen.found is not None)
        ablation = app.screen
        assert ablation.query_one(Input).value == TEXT
        # What is typed next is a new text, not the table's keys (space marks, n notes).
        assert ablation.query_one(Input).has_focus
        found = app.engine.ablate(TEXT, *chosen)
        np.testing.assert_allclose(ablation.found.delta_logit, found.delta_logit, rtol=1e-6, atol=1e-9)
        table = ablation.query_one(DataTable)
        assert table.row_count == found.n_positions
        worst = int(np.argmin(found.delta_logit))
        assert str(table.get_row_at(worst)[4]) == f"{found.delta_logit[worst]:+.4f}"
        assert "largest drop" in str(ablation.query_one("#ablation-note").render())
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))


class HeldAblation(NeuronEngine):
    """An engine whose ablation, after its first progress, waits until its view asks it to stop:
    the test sees the progress on screen while the run is provably still going."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.stopped = threading.Event()

    def ablate(self, text, layer, neuron, target=None, batch_tokens=2048, listener=None, cancelled=None):
        def heard(progress):
            if listener is not None:
                listener(progress)
            while cancelled is not None and not cancelled():
                self.stopped.wait(0.01)
            self.stopped.set()

        return super().ablate(text, layer, neuron, target, 8, heard, cancelled)


async def test_a_long_ablation_shows_progress_and_stops_when_left(tiny_llama_dir, tmp_path):
    app = _app(tiny_llama_dir, tmp_path, HeldAblation)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await _probed(pilot, app)
        await pilot.press("escape")  # the probe's text stays for the detail
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, AblationScreen))
        screen = app.screen
        note = lambda: str(screen.query_one("#ablation-note").render())  # noqa: E731
        await wait_for(pilot, lambda: "ablating:" in note() and " of " in note())
        await pilot.press("j")  # the explorer answers keys while it runs
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.engine.stopped.is_set())
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers if w.group == "ablation"))
        assert isinstance(app.screen, NeuronDetailScreen) and screen.found is None


class HeldAttribution(NeuronEngine):
    """An engine whose attribution, after its first progress, waits until its view asks it to stop."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.stopped = threading.Event()

    def attribute(self, text, layers, top, target=None, listener=None, cancelled=None):
        def heard(progress):
            if listener is not None:
                listener(progress)
            while cancelled is not None and not cancelled():
                self.stopped.wait(0.01)
            self.stopped.set()

        return super().attribute(text, layers, top, target, heard, cancelled)


async def test_a_long_attribution_shows_progress_and_stops_when_left(tiny_llama_dir, tmp_path):
    app = _app(tiny_llama_dir, tmp_path, HeldAttribution)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        probe = await _probed(pilot, app)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WhyTokenScreen))
        why = app.screen
        note = lambda: str(why.query_one("#why-note").render())  # noqa: E731
        await wait_for(pilot, lambda: "attributing:" in note() and " of " in note())
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.engine.stopped.is_set())
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers if w.group == "why-token"))
        assert app.screen is probe and why.found is None


async def test_keys_in_one_burst_open_and_leave_the_views_once(tiny_llama_dir, tmp_path):
    app = _app(tiny_llama_dir, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        probe = await _probed(pilot, app)
        await burst_read(pilot, app, "down", "down", "w", "escape", "w")
        assert isinstance(app.screen, WhyTokenScreen) and app.screen.position == 1
        assert app.screen_stack.count(probe) == 1
        why = app.screen
        await wait_for(pilot, lambda: why.found is not None)
        await burst_read(pilot, app, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        detail = app.screen
        await burst_read(pilot, app, "x", "escape", "x", "escape")  # the ablation opened and left twice
        assert app.screen is detail and app.is_running
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers if w.group == "ablation"))
