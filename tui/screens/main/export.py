"""The explorer's exports: ask for a file, refuse what cannot be written, confirm before replacing
one, write in a worker. It draws nothing; what it wrote (or why not) is a notification. A
dictionary's features listed, they are exported with their dictionary and closest neurons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.widget import Widget
from textual.worker import Worker

from engine.data.neurons import LayerNeurons
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine, check_output_path
from engine.settings import ScanSettings
from tui.messages import report_failure
from tui.screens.confirm import ConfirmScreen
from tui.screens.prompt import PromptScreen
from tui.state import ExplorerState

PATH_HINT = ".csv, .json or .jsonl, by extension; ~ is your home"


class Export(Widget):
    DEFAULT_CSS = "Export { display: none; }"

    def __init__(self, engine: NeuronEngine, state: ExplorerState, export_dir: Path) -> None:
        super().__init__()
        self.engine, self.state, self.export_dir = engine, state, export_dir

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(self, event)  # up to the screen, which says so

    def collection(self) -> None:
        """Export the collection (every marked neuron, all layers); with nothing marked, say how."""
        collection, word = self.state.collection, self.state.unit_word
        if collection is None or not len(collection):
            self.notify(
                f"the collection is empty: mark {word} with space, or press E to export the listed {word}",
                severity="warning",
            )
            return
        layers = collection.layers()
        title = f"Export the collection: {len(collection)} {word} from {len(layers)} layer(s)"
        settings, engine = self.state.settings, self.engine

        def records() -> Iterator[dict]:
            return engine.collection_records(collection, settings)

        self._ask_path(title, f"{word}-collection.csv", records, settings)

    def listed(self, neurons: LayerNeurons | None, chosen: list[int]) -> None:
        """Export the neurons listed on screen, in their order."""
        if neurons is None:
            self.notify("nothing to export yet: the layer is still being computed", severity="warning")
            return
        word = self.state.unit_word
        title = f"Export the {len(chosen)} listed {word} of layer {neurons.layer}"
        settings, engine = self.state.settings, self.engine

        def records() -> Iterator[dict]:
            # A dictionary's features with their closest neurons, as the command line exports them
            # (read here, in the worker: it may read the weights).
            shown = neurons
            if settings.units.is_dictionary:
                closest = engine.neighbours(neurons.layer, settings.units, of_features=True)
                shown = replace(neurons, neighbours=closest)
            return engine.neuron_records(shown, chosen, settings)

        group = self.state.expert_group(neurons.result)  # one expert listed: its name in the file's
        part = "" if group is None else f"-{group.label}"
        self._ask_path(title, f"{word}-layer{neurons.layer}{part}.csv", records, settings)

    def _ask_path(
        self, title: str, name: str, records: Callable[[], Iterator[dict]], settings: ScanSettings
    ) -> None:
        """Ask for a file to write ``records`` to; refuse what the explorer cannot write to, and ask
        before replacing a file that exists (Enter replaces it, Escape keeps it)."""

        def then(path: str) -> None:
            self.write(path, records, settings)

        def chosen(text: str | None) -> None:
            path = (text or "").strip()
            refusal = _refusal(path)
            if refusal:
                self.notify(refusal, title="export", severity="error")
                return
            if not path:
                return
            target = Path(path).expanduser()
            if target.is_file():
                question = f"{target} exists. Replace it?"
                self.app.push_screen(
                    ConfirmScreen(question, "Enter replaces it, Escape keeps the old file"),
                    lambda yes: then(path) if yes else self.notify(f"kept {target}", title="export"),
                )
                return
            then(path)

        prompt = PromptScreen(title, str(self.export_dir / name), PATH_HINT, check=_path_refusal)
        self.app.push_screen(prompt, chosen)

    @work(thread=True, group="export", exit_on_error=False)
    def write(self, path: str, records: Callable[[], Iterator[dict]], settings: ScanSettings) -> None:
        """Records are made here, in the worker: a collection may need layers read or computed."""
        count = self.engine.write_records(path, records(), self.engine.export_metadata(settings))
        word = "features" if settings.units.is_dictionary else "neurons"
        self.app.call_from_thread(self.notify, f"wrote {count} {word} to {path}", title="exported")


def _refusal(path: str) -> str | None:
    """Why the explorer cannot write to ``path`` (None: it can try)."""
    if path == "-":
        return (
            "'-' means standard output, which the explorer draws on: give a file path "
            "(or use neuron-tui collection -o - from a shell)"
        )
    if path and Path(path).expanduser().is_dir():
        return f"{path} is a folder: add a file name ending in .csv, .json or .jsonl"
    return None


def _path_refusal(text: str) -> str | None:
    """Why the export dialog cannot take ``text`` as its file (None: it can, or it is empty and the
    dialog closes), found before the dialog closes so that a typo is corrected, not typed again."""
    path = text.strip()
    if not path:
        return None
    refusal = _refusal(path)
    if refusal:
        return refusal
    try:
        check_output_path(path)
    except UserError as error:  # the command line's wording offers '-', which the explorer cannot
        return str(error).replace(", - for stdout", "")
    return None
