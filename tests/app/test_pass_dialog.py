"""The corpus pass dialog chooses the layers, the token cap and the corpus, by keyboard alone and
readable without colour; a bad corpus file is refused inside the dialog in one line (no model is
loaded: the dialog runs alone here); plan_pass plans over the chosen corpus."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Label, Static

from engine.neuron_engine import NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tests.helpers.app import wait_for
from tui.corpus_pass import plan_pass, the_corpus
from tui.screens.pass_dialog import PassChoice, PassDialog
from tui.state import ExplorerState


class _Harness(App[None]):
    """The dialog over an empty screen; its answers are kept."""

    def __init__(self, dialog: PassDialog) -> None:
        super().__init__()
        self.dialog = dialog
        self.answers: list[PassChoice | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.dialog, self.answers.append)


def _dialog(**options) -> PassDialog:
    return PassDialog(7, 30, 50_000, "a CPU", **options)


def _plain(dialog: PassDialog, widget_id: str) -> str:
    widget = dialog.query_one(widget_id)
    content = widget.render() if isinstance(widget, (Static, Label)) else ""
    return getattr(content, "plain", str(content))


async def test_enter_keeps_the_explorers_corpus():
    app = _Harness(_dialog())
    async with app.run_test(size=(100, 40)) as pilot:
        corpus = _plain(app.dialog, "#pass-corpus")
        assert "(•) wikipedia-vital, as started: general English" in corpus and "( ) python-docs:" in corpus
        assert corpus.count("wikipedia-vital") == 1  # the explorer's own is not listed twice
        await pilot.press("down", "enter")  # down: all layers (the token cap has the focus)
        await wait_for(pilot, lambda: app.answers)
    assert app.answers == [PassChoice(True, 50_000, None)]


async def test_tab_then_up_down_choose_a_built_in_corpus_by_keyboard_alone():
    app = _Harness(_dialog())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("tab", "down")  # the corpus: python-docs
        corpus = _plain(app.dialog, "#pass-corpus")
        assert "(•) python-docs:" in corpus and "( ) wikipedia-vital, as started" in corpus
        assert "(•) this layer (L7)" in _plain(app.dialog, "#pass-layers")  # the layers stay
        await pilot.press("down", "down", "down", "up", "down")  # round the list: python-docs again
        assert "(•) python-docs:" in _plain(app.dialog, "#pass-corpus")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.answers)
    (choice,) = app.answers
    assert choice == PassChoice(False, 50_000, "python-docs")
    assert choice.loaded is not None and choice.loaded.name.startswith("python-docs (Python ")


async def test_a_bad_file_is_refused_in_one_line_and_the_dialog_stays_open(tmp_path):
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"text\x00more")
    good = tmp_path / "good.txt"
    good.write_text("She said that she would bring her book.")
    app = _Harness(_dialog(corpus_name="my-corpus.jsonl"))
    async with app.run_test(size=(100, 40)) as pilot:
        corpus = _plain(app.dialog, "#pass-corpus")
        assert "(•) as started: my-corpus.jsonl" in corpus and "( ) wikipedia-vital:" in corpus
        await pilot.press("tab", "enter")  # "a file" not chosen yet: the explorer's corpus
        await wait_for(pilot, lambda: app.answers)
    assert app.answers == [PassChoice(False, 50_000, None)]

    app = _Harness(_dialog())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("tab", *str(tmp_path / "missing.txt"))  # typing a path chooses "a file"
        assert "(•) a file" in _plain(app.dialog, "#pass-corpus")
        for bad, words in (("missing.txt", "does not exist"), ("binary.txt", "looks binary")):
            app.dialog.query_one("#pass-path").value = str(tmp_path / bad)
            await pilot.press("enter")
            await wait_for(pilot, lambda: not app.dialog.checking)
            error = _plain(app.dialog, "#pass-error")
            assert words in error and "\n" not in error
            assert app.screen is app.dialog and not app.answers  # still open, nothing answered
        app.dialog.query_one("#pass-path").value = str(good)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.answers)
    (choice,) = app.answers
    assert choice.corpus == str(good) and choice.loaded is not None and choice.loaded.characters == 39


async def test_an_empty_path_asks_for_one():
    app = _Harness(_dialog())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("tab", "up", "enter")  # up from the first: "a file", with nothing typed
        assert "type a file" in _plain(app.dialog, "#pass-error") and not app.answers


def test_plan_pass_plans_over_the_chosen_corpus():
    state = ExplorerState(ScanSettings())
    state.activation = ActivationSettings(context=64)
    same = plan_pass(state, [3], 1_000)
    assert same.corpus is None and same.corpus_spec is None and same.cap == 1_000
    chosen = plan_pass(state, [3, 4], None, corpus="python-docs")
    assert chosen.corpus is None and chosen.corpus_spec == "python-docs" and chosen.settings.context == 64
    assert the_corpus(chosen.corpus, chosen.corpus_spec).name.startswith("python-docs (Python ")
    opened = NeuronEngine.corpus("wikipedia-vital")
    planned = plan_pass(state, [3], 500, corpus="wikipedia-vital", loaded=opened)
    assert planned.corpus is opened and the_corpus(planned.corpus, planned.corpus_spec) is opened
