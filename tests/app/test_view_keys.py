"""One key, one meaning: a key means the same in every view a user moves between (or nothing
there), and what a view tells you to press works there."""

from __future__ import annotations

from textual.binding import Binding

from tests.helpers.app import make_app, settle, wait_for
from tui.app import NeuronApp
from tui.screens.ablation import AblationScreen
from tui.screens.all_layers import AllLayersScreen
from tui.screens.collection import CollectionScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.coverage import CoverageScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.dialog import Dialog
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.main.layer_view import LayerView
from tui.screens.neuron_probe import NeuronProbeScreen
from tui.screens.pass_dialog import PassDialog
from tui.screens.projection import ProjectionScreen
from tui.screens.text_probe import TextProbeScreen
from tui.screens.token_search import TokenSearchScreen
from tui.screens.why_token import WhyTokenScreen
from tui.widgets.expert_picker import ExpertPicker
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.neuron_list import NeuronList
from tui.widgets.tables import VIM_KEYS

# What each action means to a user. Two actions mean the same when they do the same thing to what
# the view shows (the list's cursor and the detail's scroll both move down).
MEANINGS = {
    "quit": "leave",
    "close": "leave",
    "cancel": "leave",
    "decline": "leave",
    "dismiss": "leave",
    "help": "help",
    "next_layer": "next layer",
    "app.next_layer": "next layer",
    "previous_layer": "previous layer",
    "app.previous_layer": "previous layer",
    "collection": "collection",
    "note": "note",
    "note_shown": "note",
    "undo": "undo",
    "export": "export",
    "export_listed": "export listed",
    "all_layers": "all layers",
    "projection": "projection",
    "token_search": "token search",
    "coverage": "coverage",
    "corpus_pass": "corpus pass",
    "layer_pass": "corpus pass",
    "text_probe": "probe",
    "probe_neuron": "probe",
    "cycle_sort": "sort",
    "reverse_sort": "reverse",
    "filter": "filter",
    "go_to": "go to",
    "toggle_histogram": "histogram or curve",
    "grow_histogram": "taller histogram",
    "cursor_down": "down",
    "scroll_tokens('down')": "down",
    "choose(1)": "down",
    "cursor_up": "up",
    "scroll_tokens('up')": "up",
    "choose(-1)": "up",
    "page_down": "page down",
    "scroll_tokens('page_down')": "page down",
    "page_up": "page up",
    "scroll_tokens('page_up')": "page up",
    "first": "first",
    "scroll_tokens('home')": "first",
    "last": "last",
    "scroll_tokens('end')": "last",
    "toggle_mark": "mark",
    "mark_shown": "mark",
    "unmark": "mark",
    "select": "choose",
    "open": "choose",
    "jump": "choose",
    "apply": "choose",
    "start": "choose",
    "confirm": "choose",
    "step(1)": "next neuron",
    "step(-1)": "previous neuron",
    "gurnee": "tick all",
    "raw": "untick all",
    "toggle_layers": "this layer or all layers",
    "open_detail": "open its detail",
    "why_token": "why this token",
    "ablate": "ablate",
    "focus_next": "next field",
    "next_expert": "next expert",
    "previous_expert": "previous expert",
    "app.focus_next": "next field",
    "switch_units": "neurons or features",
    **{f"closest({rank})": "open a closest unit" for rank in range(5)},
}

ANYWHERE = [*NeuronApp.BINDINGS]
MAIN = [
    *ANYWHERE,
    *MainScreen.BINDINGS,
    *LayerView.BINDINGS,
    *NeuronList.BINDINGS,
    *LayerPicker.BINDINGS,
    *ExpertPicker.BINDINGS,
]
TABLES = [*VIM_KEYS]
# Every view a user reaches, its keys (the app's keys work under it), and the key that opened it
# from the main screen (pressed again there, it closes the view: the same key, back and forth).
VIEWS = [
    ("main", MAIN, None),
    ("detail", [*ANYWHERE, *NeuronDetailScreen.BINDINGS], "enter"),
    ("collection", [*ANYWHERE, *CollectionScreen.BINDINGS, *TABLES], "m"),
    ("all layers", [*ANYWHERE, *AllLayersScreen.BINDINGS, *TABLES], "a"),
    ("token search", [*ANYWHERE, *TokenSearchScreen.BINDINGS, *TABLES], "slash"),
    ("coverage", [*ANYWHERE, *CoverageScreen.BINDINGS, *TABLES], "c"),
    ("text probe", [*ANYWHERE, *TextProbeScreen.BINDINGS, *TABLES], "t"),
    ("neuron probe", [*ANYWHERE, *NeuronProbeScreen.BINDINGS, *TABLES], "t"),
    ("why this token", [*ANYWHERE, *WhyTokenScreen.BINDINGS, *TABLES], None),
    ("ablation", [*ANYWHERE, *AblationScreen.BINDINGS, *TABLES], None),
    ("help", [*HelpScreen.BINDINGS], "question_mark"),
    ("projection", [*ProjectionScreen.BINDINGS], "p"),
    ("pass dialog", [*PassDialog.BINDINGS], "A"),
    ("confirm", [*ConfirmScreen.BINDINGS], None),
    ("prompt", [*Dialog.BINDINGS], None),
]


def _meanings() -> dict[str, dict[str, set[str]]]:
    """key -> meaning -> the views where the key has that meaning."""
    found: dict[str, dict[str, set[str]]] = {}
    for view, bindings, opened_by in VIEWS:
        for binding in bindings:
            assert isinstance(binding, Binding)
            meaning = MEANINGS.get(binding.action)
            assert meaning is not None, f"{view}: what does {binding.action!r} mean? (add it to MEANINGS)"
            for key in binding.key.split(","):
                if key == opened_by and meaning == "leave":
                    continue  # the key that opened the view closes it
                found.setdefault(key, {}).setdefault(meaning, set()).add(view)
    return found


def test_a_key_means_one_thing_in_every_view():
    clashes = {key: meanings for key, meanings in _meanings().items() if len(meanings) > 1}
    assert not clashes, "keys with two meanings: " + "; ".join(
        f"{key}: " + ", ".join(f"{meaning} in {sorted(views)}" for meaning, views in meanings.items())
        for key, meanings in sorted(clashes.items())
    )


def test_the_detail_runs_its_corpus_pass_on_A_as_the_main_screen_does():
    detail = {binding.key: binding.action for binding in NeuronDetailScreen.BINDINGS}
    main = {binding.key: binding.action for binding in MainScreen.BINDINGS}
    assert MEANINGS[detail["A"]] == MEANINGS[main["A"]] == "corpus pass"
    keys = {key for binding in NeuronDetailScreen.BINDINGS for key in binding.key.split(",")}
    assert not keys & {"a", "h", "g"}, "the list's all-layers, histogram and go-to keys: unbound here"


def _activity(detail: NeuronDetailScreen) -> str:
    line = detail.query_one("#detail-activity")
    return str(line.render()) if line.display else ""


async def test_in_the_detail_a_h_and_g_do_nothing_and_A_starts_the_pass_it_names(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        detail = app.screen
        assert "A reads this layer's text" in detail.evidence_text.plain
        await pilot.press("right")
        neuron, top = detail.neuron, detail.query_one("#detail-tokens").scroll_offset.y
        await pilot.press("end")
        await wait_for(pilot, lambda: detail.query_one("#detail-tokens").scroll_offset.y > top)
        bottom = detail.query_one("#detail-tokens").scroll_offset.y
        await pilot.press("a", "h", "g")
        assert app.screen is detail and detail.neuron == neuron and not detail.pass_running()
        assert detail.query_one("#detail-tokens").scroll_offset.y == bottom and _activity(detail) == ""
        await pilot.press("A")
        assert "reading text for L2" in _activity(detail)


async def test_the_text_probe_takes_ctrl_a_while_you_type(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextProbeScreen))
        probe = app.screen
        await pilot.press(*"she said")
        assert probe.focused is probe.query_one("#probe-input") and not probe.all_layers
        await pilot.press("ctrl+a")
        assert probe.all_layers, "the key the note names switches to all layers while the field has focus"
        assert "all 3 layers" in str(probe.query_one("#probe-title").render())


async def test_the_projection_dialog_ticks_with_plus_and_minus_as_it_says(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectionScreen))
        dialog = app.screen
        hint = str(dialog.query_one("#projection-hint").render())
        assert "+ all three" in hint and "- none" in hint
        boxes = list(dialog.query("FlagBox"))
        await pilot.press("plus")
        assert [box.value for box in boxes] == [True, True, True]
        await pilot.press("g", "r")  # the list's go-to and reverse keys: nothing here
        assert [box.value for box in boxes] == [True, True, True] and app.screen is dialog
        await pilot.press("minus")
        assert [box.value for box in boxes] == [False, False, False]
        await pilot.press("escape")


async def test_the_pass_dialog_names_only_keys_that_work_in_it(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, PassDialog))
        hint = str(app.screen.query_one(".dialog-hint").render())
        assert "A again" not in hint, "typed in the dialog, A is a letter of the token cap"
        assert "Enter starts, Escape cancels" in hint
        await pilot.press("escape")
