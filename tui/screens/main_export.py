"""The explorer's exports: ask for a file, refuse what cannot be written, confirm before replacing
one, write in a worker.

A part of ``MainScreen`` (a mixin on ``MainParts``); its methods run as the screen's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from textual import work

from engine.settings import ScanSettings
from tui.screens.confirm import ConfirmScreen
from tui.screens.main_parts import MainParts
from tui.screens.prompt import PromptScreen
from tui.widgets.neuron_list import NeuronList


class ExportActions(MainParts):
    def action_export(self) -> None:
        """Export the collection (every marked neuron, all layers); with nothing marked, say how."""
        collection = self.state.collection
        if collection is None or not len(collection):
            self.notify(
                "the collection is empty: mark neurons with space, or press E to export the listed neurons",
                severity="warning",
            )
            return
        layers = collection.layers()
        title = f"Export the collection: {len(collection)} neurons from {len(layers)} layer(s)"
        self._ask_path(title, "neurons-collection.csv", self._export_collection)

    def action_export_listed(self) -> None:
        if self.result is None:
            self.notify("nothing to export yet: the layer is still being computed", severity="warning")
            return
        listed = len(self.query_one(NeuronList).order)
        title = f"Export the {listed} listed neurons of layer {self.result.layer}"
        self._ask_path(title, f"neurons-layer{self.result.layer}.csv", self._export_listed)

    def _ask_path(self, title: str, name: str, then: Callable[[str], None]) -> None:
        """Ask for a file to write; refuse what the explorer cannot write to, and ask before
        replacing a file that exists (Enter replaces it, Escape keeps it)."""
        hint = ".csv, .json or .jsonl, by extension; ~ is your home"

        def chosen(text: str | None) -> None:
            path = (text or "").strip()
            if not path:
                return
            if path == "-":
                self.notify(
                    "'-' means standard output, which the explorer draws on: give a file path "
                    "(or use neuron-tui collection -o - from a shell)",
                    title="export",
                    severity="error",
                )
                return
            target = Path(path).expanduser()
            if target.is_dir():
                self.notify(
                    f"{path} is a folder: add a file name ending in .csv, .json or .jsonl",
                    title="export",
                    severity="error",
                )
                return
            if target.exists():
                question = f"{target} exists. Replace it?"
                self.app.push_screen(
                    ConfirmScreen(question, "Enter replaces it, Escape keeps the old file"),
                    lambda yes: then(path) if yes else self.notify(f"kept {target}", title="export"),
                )
                return
            then(path)

        self.app.push_screen(PromptScreen(title, str(self.export_dir / name), hint), chosen)

    def _export_listed(self, path: str) -> None:
        if self.neurons is None or self.info is None or self.vocab is None:
            return
        neurons, chosen, settings = (
            self.neurons,
            self.query_one(NeuronList).listed_neurons,
            self.state.settings,
        )
        engine = self.engine
        self.write_export(path.strip(), lambda: engine.neuron_records(neurons, chosen, settings), settings)

    def _export_collection(self, path: str) -> None:
        collection = self.state.collection
        if collection is None or self.info is None or self.vocab is None:
            return
        settings, engine = self.state.settings, self.engine

        def records() -> Iterator[dict]:
            return engine.collection_records(collection, settings)

        self.write_export(path.strip(), records, settings)

    @work(thread=True, group="export", exit_on_error=False)
    def write_export(self, path: str, records: Callable[[], Iterator[dict]], settings: ScanSettings) -> None:
        """Records are made here, in the worker: a collection may need layers read or computed."""
        count = self.engine.write_records(path, records(), self.engine.export_metadata(settings))
        self.app.call_from_thread(self.notify, f"wrote {count} neurons to {path}", title="exported")
