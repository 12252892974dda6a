"""The collection workflow: mark neurons across layers, keep them through every change and a
restart, note them, list them, export them (from the explorer and from the command line)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from engine.settings import ScanSettings
from engine.store.collection import Collection
from tests.helpers.app import answer_prompt, make_app, settle, showing, wait_for
from tests.helpers.cli import run_cli
from tui.screens.collection import CollectionScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.prompt import PromptScreen
from tui.widgets.neuron_list import NeuronList

SIZE = (120, 40)


async def test_marks_belong_to_neurons_and_survive_every_change_and_a_restart(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        on_2 = listing.order[:2].tolist()
        await pilot.press("space", "space", "[")
        await wait_for(pilot, lambda: showing(app, 1))
        on_1 = listing.current_neuron
        await pilot.press("space")
        assert "3 marked" in str(app.query_one("#status-text").render())
        await pilot.press("]")
        await wait_for(pilot, lambda: showing(app, 2))
        assert listing.marked == set(on_2)
        await pilot.press("s", "r")  # sort and direction change
        await answer_prompt(pilot, app, "f", "kurtosis>0")
        assert app.state.marked == set(on_2)
        await pilot.press("p")
        await pilot.press("plus", "enter")  # another projection
        await settle(pilot, app)
        assert app.state.marked == set(on_2) and len(app.state.collection) == 3
    again = make_app(tiny_gguf, tmp_path / "c")
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot, again)
        assert again.state.marked == set(on_2)
        assert [(m.layer, m.neuron) for m in again.state.collection.items()] == sorted(
            [(1, on_1)] + [(2, n) for n in on_2]
        )


async def test_collection_view_notes_unmarks_opens_and_exports(tiny_gguf, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the export path below starts with ~
    app = make_app(tiny_gguf, tmp_path / "c", export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        first, second = listing.order[:2].tolist()
        await answer_prompt(pilot, app, "n", "looks like [bold]x")  # a note marks the neuron
        await pilot.press("j", "space", "[")
        await wait_for(pilot, lambda: showing(app, 1))
        third = listing.current_neuron
        await pilot.press("space", "m")
        await wait_for(pilot, lambda: isinstance(app.screen, CollectionScreen))
        screen = app.screen
        await wait_for(pilot, lambda: set(screen.loaded) == {1, 2})
        assert [(m.layer, m.neuron) for m in screen.rows] == sorted([(2, first), (2, second), (1, third)])
        table = screen.query_one("#collection-table")
        row = [m.neuron for m in screen.rows].index(first)
        assert str(table.get_cell_at((row, 5))) == "looks like [bold]x"
        max_dot = float(str(table.get_cell_at((row, 1))))
        assert max_dot == round(float(app.engine.cached_layer(2, app.state.settings).max_dot[first]), 3)
        assert "3 neurons from 2 layers" in str(screen.query_one("#collection-title").render())
        table.move_cursor(row=[m.neuron for m in screen.rows].index(second))
        await pilot.press("space")  # unmark
        assert (2, second) not in app.state.collection and len(screen.rows) == 2
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        assert "2 neurons from 2 layer" in str(app.screen.query_one("#prompt-title").render())
        app.screen.query_one("Input").value = "~/collection.jsonl"
        await pilot.press("enter")
        await wait_for(pilot, (home / "collection.jsonl").exists)
        records = [json.loads(line) for line in (home / "collection.jsonl").read_text().splitlines()]
        assert [(r["layer"], r["neuron"], r["note"]) for r in records] == [
            (1, third, ""),
            (2, first, "looks like [bold]x"),
        ]
        assert records[1]["max_dot"] == float(app.engine.cached_layer(2, app.state.settings).max_dot[first])
        assert len(records[1]["top"]) == 10 and records[1]["settings"]["projection"] == "raw"
        await wait_for(pilot, lambda: isinstance(app.screen, CollectionScreen))
        table.move_cursor(row=[m.neuron for m in screen.rows].index(third))
        await pilot.press("enter")  # opens the neuron's detail in its layer
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        assert (app.screen.result.layer, app.screen.neuron) == (1, third)
        assert str(app.screen.query_one("#detail-title").render()).startswith(f"L1/N{third}")


def test_collection_command_exports_the_explorers_marks(tiny_gguf, tmp_path):
    from engine.neuron_engine import EngineOptions, NeuronEngine

    engine = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c"))
    info = engine.info
    collection = Collection.for_model(info.name, info.fingerprint)
    collection.toggle(0, 5)
    collection.set_note(2, 7, "=cmd() in a note")
    engine.close()
    args = ["collection", "--model", str(tiny_gguf), "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    done = run_cli(*args, "--output", str(tmp_path / "c.csv"))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "c.csv").open(newline="")))
    assert [(r["layer"], r["neuron"], r["note"]) for r in rows] == [
        ("0", "5", ""),
        ("2", "7", "'=cmd() in a note"),
    ]
    result = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c")).layer(
        2, ScanSettings()
    )
    assert float(rows[1]["max_dot"]) == result.max_dot[7]
    empty = run_cli(
        *args[:3], "--cache-dir", str(tmp_path / "c"), env={"NEURON_TUI_DATA_DIR": str(tmp_path / "none")}
    )
    assert empty.returncode == 2 and "collection of tiny-llama is empty" in empty.stderr


def test_a_damaged_collection_file_is_set_aside_not_lost(tmp_path):
    collection = Collection.for_model("m", "a" * 64, tmp_path)
    collection.toggle(3, 4)
    collection.path.write_text("{broken")
    again = Collection.for_model("m", "a" * 64, tmp_path)
    assert len(again) == 0 and "could not be read" in again.warning
    kept = list(collection.path.parent.glob("*.unreadable-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == "{broken"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux gives the explorer a real terminal")
def test_marks_on_two_layers_survive_a_restart_and_export_exactly(tiny_gguf, tmp_path):
    """In a real terminal: mark on two layers, quit, start again, export, check the file."""
    from tests.helpers.terminal import Terminal

    env = {"NEURON_TUI_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    args = ["--model", str(tiny_gguf), "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    first = Terminal(args, size=(80, 24), env=env)
    try:
        first.wait_for_screen("all 3 layers computed")
        first.type(b" ")  # two marks on layer 2
        first.wait_for_screen("1 marked")
        first.type(b" ")
        first.wait_for_screen("2 marked")
        first.type(b"[")
        first.wait_for_screen("Layer 1 / 2")
        first.type(b" ")
        first.wait_for_screen("3 marked")
        first.type(b"q")
        assert first.wait() == 0
    finally:
        first.kill()
    second = Terminal(args, size=(120, 40), env=env)
    try:
        second.wait_for_screen("3 marked")
        second.type(b"e")
        second.wait_for_screen("3 neurons from 2 layer")
        second.type(b"\x15")  # ctrl+u clears the field
        second.wait_for_screen("▊" + " " * 20)
        second.type(str(tmp_path / "out.csv").encode())
        second.wait_for_screen("out.csv")
        second.type(b"\r")
        while not (tmp_path / "out.csv").exists() and not second.ended():
            subprocess.run(["sleep", "0.05"])
        second.type(b"q")
        assert second.wait() == 0
    finally:
        second.kill()
    rows = list(csv.DictReader((tmp_path / "out.csv").open(newline="")))
    marked = Collection.for_model("tiny-llama", rows[0]["fingerprint"], tmp_path / "data").items()
    assert [(int(r["layer"]), int(r["neuron"])) for r in rows] == [(m.layer, m.neuron) for m in marked]
    assert sorted({m.layer for m in marked}) == [1, 2] and len(marked) == 3
    from engine.neuron_engine import EngineOptions, NeuronEngine

    engine = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c"))
    for row in rows:
        result = engine.cached_layer(int(row["layer"]), ScanSettings())
        assert float(row["max_dot"]) == result.max_dot[int(row["neuron"])]
        assert int(row["token_id_1"]) == result.top_ids[int(row["neuron"]), 0]
