"""Nothing a user makes is lost: two explorers on one collection, keys typed ahead, unmarking a
noted neuron, undo, exports over existing files, token strings of the right tokenizer, a team's
shared cache folder. The two-explorer and type-ahead cases run real explorers in real terminals."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import time

import pytest

from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.store.collection import Collection
from tests.helpers.app import answer_prompt, make_app, settle, wait_for
from tests.helpers.cli import run_cli
from tests.helpers.terminal import Terminal
from tui.screens.confirm import ConfirmScreen
from tui.screens.prompt import PromptScreen
from tui.widgets.neuron_list import NeuronList

SIZE = (120, 40)


def _collection_file(data_dir) -> dict:
    (path,) = (data_dir / "collections").glob("*.json")
    return json.loads(path.read_text())


def _marked(data_dir) -> dict[tuple[int, int], str]:
    return {(e["layer"], e["neuron"]): e["note"] for e in _collection_file(data_dir)["neurons"]}


def _explorer(model, cache, data_dir, size=SIZE) -> Terminal:
    args = ["--model", str(model), "--device", "cpu", "--cache-dir", str(cache)]
    return Terminal(args, size=size, env={"NEURON_TUI_DATA_DIR": str(data_dir), "TERM": "xterm"})


def _wait_until(predicate, terminal: Terminal) -> None:
    while not predicate() and not terminal.ended():
        time.sleep(0.05)


def _quit(*terminals: Terminal) -> None:
    for terminal in terminals:
        if not terminal.ended():
            terminal.type(b"q")
    for terminal in terminals:
        assert terminal.wait() == 0


@pytest.mark.slow
def test_two_explorers_on_one_model_keep_each_others_marks_and_notes(tiny_gguf, tmp_path):
    """Window 1 marks two neurons, window 2 notes a third, window 1 marks a fourth: all four are
    kept, with the note, and each window shows the other's changes."""
    cache, data = tmp_path / "cache", tmp_path / "data"
    run_cli("scan", "--model", str(tiny_gguf), "--cache-dir", str(cache), "-o", str(tmp_path / "s.jsonl"))
    first, second = _explorer(tiny_gguf, cache, data), _explorer(tiny_gguf, cache, data)
    try:
        for terminal in (first, second):
            terminal.wait_for_screen("top tokens by")
        first.type(b"  ")  # two marks (space marks and moves down)
        first.wait_for_screen("2 marked")
        second.wait_for_screen("2 marked")  # the other explorer's marks show up
        second.type(b"G")  # the last row: a neuron nobody marked
        second.type(b"n")
        second.wait_for_screen("Note for")
        second.type(b"from window two\r")
        second.wait_for_screen("3 marked")
        first.wait_for_screen("3 marked")
        first.type(b" ")
        first.wait_for_screen("4 marked")
        second.wait_for_screen("4 marked")
        marked = _marked(data)
        assert len(marked) == 4, marked
        assert sorted(marked.values()) == ["", "", "", "from window two"]
    finally:
        _quit(first, second)
    assert len(_marked(data)) == 4


@pytest.mark.slow
def test_keys_typed_ahead_mark_the_neuron_that_was_highlighted(tiny_gguf, tmp_path):
    """``g L1/N5``, then space and ] in one burst, as keys arrive over a slow SSH link: the mark is
    (1, 5), not neuron 5 of layer 2."""
    cache, data = tmp_path / "cache", tmp_path / "data"
    terminal = _explorer(tiny_gguf, cache, data)
    try:
        terminal.wait_for_screen("top tokens by")
        terminal.type(b"g")
        terminal.wait_for_screen("Go to neuron")
        terminal.type(b"L1/N5\r")
        terminal.wait_for_screen("layer 1: max-dot")  # the list shows layer 1, cursor on neuron 5
        terminal.type(b" ]")
        terminal.wait_for_screen("1 marked")
        terminal.wait_for_screen("Layer 2 /")
    finally:
        _quit(terminal)
    assert _marked(data) == {(1, 5): ""}


def test_collections_written_by_two_owners_merge_change_by_change(tmp_path):
    """The file is read, changed and written under a lock for each change: neither owner's
    in-memory copy overwrites the other's."""
    one = Collection.for_model("m", "f" * 64, tmp_path)
    two = Collection.for_model("m", "f" * 64, tmp_path)
    one.toggle(1, 1)
    one.toggle(1, 2)
    two.set_note(3, 3, "two's note")
    one.toggle(1, 4)
    assert {(m.layer, m.neuron): m.note for m in Collection.for_model("m", "f" * 64, tmp_path).items()} == {
        (1, 1): "",
        (1, 2): "",
        (3, 3): "two's note",
        (1, 4): "",
    }
    assert two.refresh() and len(two) == 4 and two.note(1, 4) == ""
    assert not two.refresh(), "nothing changed since"
    two.toggle(1, 1)  # unmarks what one marked: the file's state decides, not two's memory
    assert one.refresh() and (1, 1) not in one


def test_unmarking_keeps_the_note_and_undo_puts_back_each_change(tmp_path):
    collection = Collection.for_model("m", "f" * 64, tmp_path)
    collection.set_note(2, 7, "her/she")
    assert not collection.toggle(2, 7), "space on a noted neuron unmarks it"
    assert (2, 7) not in collection and collection.note(2, 7) == "her/she"
    again = Collection.for_model("m", "f" * 64, tmp_path)  # the note is in the file, not in memory
    assert again.note(2, 7) == "her/she" and len(again) == 0
    assert collection.toggle(2, 7) and collection.items()[0].note == "her/she", "re-marking brings it back"
    collection.unmark(2, 7)
    assert collection.undo() == "unmark of L2/N7" and (2, 7) in collection
    assert collection.undo() == "mark of L2/N7" and (2, 7) not in collection
    assert collection.undo() == "unmark of L2/N7" and (2, 7) in collection
    assert collection.undo() == "note of L2/N7" and (2, 7) not in collection
    assert collection.note(2, 7) == "" and collection.undo() is None
    assert not list((tmp_path / "collections").glob("*.unreadable-*"))


def test_a_format_1_collection_file_reads_as_it_did(tmp_path):
    folder = tmp_path / "collections"
    folder.mkdir()
    old = {"format": 1, "model": "m", "fingerprint": "f", "neurons": [{"layer": 1, "neuron": 2, "note": "x"}]}
    (folder / f"{'f' * 64}.json").write_text(json.dumps(old))
    collection = Collection.for_model("m", "f" * 64, tmp_path)
    assert [(m.layer, m.neuron, m.note) for m in collection.items()] == [(1, 2, "x")]


async def test_space_on_a_noted_neuron_keeps_the_note_and_u_undoes(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        neuron, layer = listing.current_neuron, app.state.layer
        await answer_prompt(pilot, app, "n", "keep me")
        await pilot.press("home", "space")  # unmarks the noted neuron
        assert neuron not in app.state.marked and app.state.collection.note(layer, neuron) == "keep me"
        await pilot.press("u")
        assert neuron in app.state.marked and app.state.collection.note(layer, neuron) == "keep me"
        assert listing.marked == {neuron}, "the list shows the undone change"
        await pilot.press("u")  # the note itself
        assert neuron not in app.state.marked and app.state.collection.note(layer, neuron) == ""
        await pilot.press("u")
        assert "nothing to undo" in str(list(app._notifications)[-1].message)


async def test_export_asks_before_replacing_a_file_and_refuses_standard_output(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c", export_dir=tmp_path)
    target = tmp_path / "picked.csv"
    target.write_text("the user's old file\n")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("space")
        await answer_prompt(pilot, app, "e", str(target))
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")  # keep the old file
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert target.read_text() == "the user's old file\n"
        await pilot.press("e")  # '-' is refused in the dialog, which stays open to correct it
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("Input").value = "-"
        await pilot.press("enter")
        hint = app.screen.query_one("#prompt-hint")
        await wait_for(pilot, lambda: "standard output" in str(hint.render()))
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, (PromptScreen, ConfirmScreen)))
        await answer_prompt(pilot, app, "e", str(target))
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")  # replace it
        await wait_for(pilot, lambda: target.read_text().startswith("model,"))
        await app.workers.wait_for_complete()
        with target.open(newline="") as handle:
            assert len(list(csv.reader(handle))) == 2  # the header and the one marked neuron


def _retokenized_copy(source, destination, vocabulary_seed: int):
    """The same weights and config beside another tokenizer."""
    from tests.helpers.models import _byte_level_tokenizer

    shutil.copytree(source, destination)
    for file in destination.glob("tokenizer*"):
        file.unlink()
    tokens = [f"t{vocabulary_seed}-{i}".encode() for i in range(300)]
    _byte_level_tokenizer(tokens).save_pretrained(destination)
    return destination


def test_token_strings_come_from_the_checkpoints_own_tokenizer(tiny_llama_dir, tmp_path):
    """Two checkpoints with identical weights and different tokenizers share a weights fingerprint
    but never their token strings, on one cache."""
    other = _retokenized_copy(tiny_llama_dir, tmp_path / "other", 7)
    cache = tmp_path / "cache"
    first = NeuronEngine(EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=cache))
    second = NeuronEngine(EngineOptions(model=str(other), device="cpu", cache_dir=cache))
    assert first.fingerprint == second.fingerprint  # the weights are the same
    texts = first.vocabulary.texts
    first.close()
    assert second.vocabulary.texts[:300] != texts[:300]
    assert second.vocabulary.text(5) == "t7-5"
    second.close()


def test_an_existing_cache_folder_keeps_its_mode_and_a_new_one_is_private(tiny_gguf, tmp_path):
    shared = tmp_path / "team-cache"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    done = run_cli("layers", "--model", str(tiny_gguf), "--layers", "1", "--cache-dir", str(shared))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o2775
    fresh = tmp_path / "new" / "cache"
    done = run_cli("layers", "--model", str(tiny_gguf), "--layers", "1", "--cache-dir", str(fresh))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


async def test_go_to_keeps_a_filter_the_target_passes_and_says_when_it_clears_one(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        result = app.main.layer_view.result
        median = float(sorted(result.max_dot)[len(result.max_dot) // 2])
        await answer_prompt(pilot, app, "f", f"{median}")
        inside = int(listing.order[-1])  # the last row: the cursor has to move to it
        outside = int(next(n for n in range(result.d_mlp) if result.max_dot[n] < median))
        await answer_prompt(pilot, app, "g", f"L{result.layer}/N{inside}")
        await wait_for(pilot, lambda: listing.current_neuron == inside)
        assert [str(c) for c in app.state.conditions] == [f"max_dot>={median}"]
        await answer_prompt(pilot, app, "g", f"L{result.layer}/N{outside}")
        await wait_for(pilot, lambda: listing.current_neuron == outside)
        assert app.state.conditions == []
        assert "does not pass the filter" in str(list(app._notifications)[-1].message)
