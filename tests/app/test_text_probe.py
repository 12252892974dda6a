"""The text probe in the explorer: an empty probe says what to type; a probe shows, per token, the
neurons with the largest activation relative to their own scale (the line under the title says
which scale), the relative value beside the raw one, and opens one neuron on the same text."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Input, Static

from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ScanSettings
from tests.engine.test_probe_scale import _assert_ranked, _text_activations, reference_text_scale
from tests.helpers.app import settle, wait_for
from tui.app import NeuronApp

TEXT = "hello there, she said"


def _shown(screen, widget_id: str) -> str:
    content = screen.query_one(widget_id, Static).render()
    return content.plain if isinstance(content, Text) else str(content)


async def test_the_text_probe_ranks_by_each_neurons_own_scale_and_opens_one(tiny_llama_dir, tmp_path):
    from tui.screens.detail import NeuronDetailScreen
    from tui.screens.neuron_probe import NeuronProbeScreen
    from tui.screens.text_probe import PER_LAYER, TextProbeScreen

    engine = NeuronEngine(
        EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "cache")
    )
    app = NeuronApp(engine, ScanSettings())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        layer = app.state.layer
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextProbeScreen))
        probe = app.screen
        assert "type a sentence" in _shown(probe, "#probe-note")  # before anything is typed
        await pilot.press("enter")  # an empty probe: the hint, and no run
        assert "type a sentence" in _shown(probe, "#probe-note") and probe.firing is None
        await pilot.press(*TEXT, "enter")
        await wait_for(pilot, lambda: probe.firing is not None)
        assert "RMS on the rest of this text" in _shown(probe, "#probe-scale")
        acts = _text_activations(engine, [layer], TEXT)
        scale = reference_text_scale(acts[layer], probe.firing.marked)
        _assert_ranked(probe.firing, acts, {layer: scale}, PER_LAYER)
        # Position 0 is shown on one row, marked and not ranked; each later position has three rows,
        # by |relative activation|, the relative value and the raw one beside.
        table = probe.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(r)] for r in range(table.row_count)]
        assert probe.rows[0] is None and rows[0][0] == "0*"
        for position in range(1, len(acts[layer])):
            for rank in range(PER_LAYER):
                row = rows[1 + PER_LAYER * (position - 1) + rank]
                neuron = int(probe.firing.neurons[position, 0, rank])
                relative = acts[layer][position, neuron] / scale[position, neuron]
                assert row[2:6] == [
                    f"L{layer}",
                    str(neuron),
                    f"{relative:+.2f}",
                    f"{acts[layer][position, neuron]:+.3f}",
                ]
        await pilot.press("down", "enter")  # position 1's first neuron: its own probe
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronProbeScreen))
        one = app.screen
        await wait_for(pilot, lambda: one.values is not None)
        assert one.neuron == int(probe.firing.neurons[1, 0, 0])
        one.query_one(Input).value = ""
        one.query_one(Input).focus()
        await pilot.press("enter")  # an empty probe of one neuron says what to type too
        assert "type a sentence" in _shown(one, "#neuron-probe-note")
        await pilot.press("ctrl+o")  # open it in the list, with its detail
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert app.screen.neuron == int(probe.firing.neurons[1, 0, 0])
