"""The collection: every marked neuron of the model, across layers, with its statistics and note
(or, while a dictionary's features are listed, every marked feature: the dictionary set's own
collection, named L29/F812 (layers.29)).

Enter opens a neuron's detail, space unmarks it, n edits its note, e exports the collection. The
layers' results come from the cache (or are computed) in a worker.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from engine.columns import COLUMNS
from engine.data.neurons import LayerNeurons
from engine.data.tokens import Vocabulary
from engine.errors import UserError, describe
from engine.neuron_engine import Collection, Marked
from tui.messages import MarksChanged
from tui.neuron_ref import NEURON_NAMES, UnitNames
from tui.render import signed_token
from tui.screens.prompt import PromptScreen
from tui.widgets.footer import KeyFooter
from tui.widgets.tables import KeyTable
from tui.widgets.title_bar import TitleBar

# The note before the tokens: at 80 columns the tokens are cut, and the note is the user's own.
STAT_COLUMNS = [COLUMNS[name] for name in ("max_dot", "null_z", "kurtosis", "class")]
TITLES = ("neuron", *(c.title for c in STAT_COLUMNS), "note", "top tokens")
NOTE_SHOWN = 24  # characters of a note in the table (the whole note is in the n dialog)
TOKENS_SHOWN = 3


def undo_and_say(collection: Collection, screen: Screen) -> None:
    """Undo this explorer's last collection change, and say what was undone (or why nothing was)."""
    try:
        undone = collection.undo()
    except UserError as error:
        screen.notify(str(error), title="undo not saved", severity="error")
        return
    if undone is None:
        screen.notify("nothing to undo: no mark or note was changed in this explorer", severity="warning")
    else:
        screen.notify(f"undid the {undone}", title="undo")


def _note_cell(note: str) -> Text:
    shown = note if len(note) <= NOTE_SHOWN else note[: NOTE_SHOWN - 1] + "…"
    return Text(shown.replace("\n", " "))


class CollectionScreen(Screen[tuple[int, int] | None]):
    BINDINGS = [
        Binding("escape,q,m", "close", "Back", id="close-collection"),
        Binding("enter", "open", "Detail", id="collection-detail"),
        Binding("space", "unmark", "Unmark (keeps the note)", id="collection-unmark"),
        Binding("n", "note", "Note", id="collection-note"),
        Binding("u", "undo", "Undo", id="collection-undo"),
        Binding("e", "export", "Export", id="collection-export"),
    ]

    DEFAULT_CSS = """
    CollectionScreen KeyTable { height: 1fr; }
    """

    class LayersLoaded(Message):
        def __init__(self, layers: dict[int, LayerNeurons]) -> None:
            super().__init__()
            self.layers = layers

    def __init__(
        self,
        model: str,
        collection: Collection,
        vocab: Vocabulary,
        layer_neurons: Callable[[int], LayerNeurons],
        export: Callable[[], None],
        names: UnitNames = NEURON_NAMES,
    ) -> None:
        """``names``: how the marked units are named (neurons, or a dictionary's features)."""
        super().__init__()
        self.names = names
        self.model, self.collection, self.vocab = model, collection, vocab
        self.layer_neurons, self.export = layer_neurons, export
        self.loaded: dict[int, LayerNeurons] = {}
        self.rows: list[Marked] = []

    def compose(self) -> ComposeResult:
        yield TitleBar(id="collection-title")
        yield KeyTable(id="collection-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(KeyTable)
        for title in TITLES:
            table.add_column(self.names.word if title == "neuron" else title, key=title)
        self.collection.refresh()  # what another explorer saved since this one last looked
        self.redraw()
        table.focus()
        self.load_layers()
        self.set_interval(1.0, self._follow_file)

    @work(thread=True, exclusive=True, group="collection", exit_on_error=False)
    def load_layers(self) -> None:
        self.post_message(
            self.LayersLoaded({layer: self.layer_neurons(layer) for layer in self.collection.layers()})
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The layers could not be read or computed: say so; the marks and notes stay listed."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            text = describe(event.worker.error)
            self.notify(text, title="statistics unavailable", severity="error", timeout=15)

    def on_collection_screen_layers_loaded(self, message: LayersLoaded) -> None:
        self.loaded = message.layers
        self.redraw()

    def redraw(self) -> None:
        table = self.query_one(KeyTable)
        keep = table.cursor_row
        table.clear()
        self.rows = self.collection.items()
        n_layers = len({m.layer for m in self.rows})
        plural = "layer" if n_layers == 1 else "layers"
        title = f"{self.model} · collection: {len(self.rows)} {self.names.word}s from {n_layers} {plural}"
        self.query_one("#collection-title", Static).update(Text(title))
        for marked in self.rows:
            table.add_row(*self._cells(marked))
        if self.rows:
            table.move_cursor(row=min(keep, len(self.rows) - 1))

    def _cells(self, marked: Marked) -> list:
        label = self.names.full(marked.layer, marked.neuron)
        neurons = self.loaded.get(marked.layer)
        if neurons is None:
            waiting = [Text("…", style="dim")] + [""] * (len(STAT_COLUMNS) - 1)
            return [label, *waiting, _note_cell(marked.note), ""]
        result, n = neurons.result, marked.neuron
        tokens = Text()
        for rank in range(min(TOKENS_SHOWN, result.top_k)):
            if rank:
                tokens.append("  ")
            tokens.append_text(
                signed_token(
                    self.vocab.text(int(result.top_ids[n, rank])), float(result.top_dots[n, rank]), 14
                )
            )
        stats = [
            "" if column.name == "null_z" and neurons.null_z is None else column.cell(column.read(neurons)[n])
            for column in STAT_COLUMNS
        ]
        return [label, *stats, _note_cell(marked.note), tokens]

    def _current(self) -> Marked | None:
        row = self.query_one(KeyTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def action_open(self) -> None:
        if (marked := self._current()) is not None:
            self.dismiss((marked.layer, marked.neuron))

    def on_data_table_row_selected(self, event: KeyTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def _change(self, change: Callable[[], None]) -> None:
        try:
            change()
        except UserError as error:  # the collection file could not be written: nothing changed there
            self.notify(str(error), title="collection not saved", severity="error")
        self._changed()

    def _changed(self) -> None:
        """Redraw, and tell the explorer: the list's marks and the status line's count follow."""
        self.redraw()
        self.post_message(MarksChanged())

    def action_unmark(self) -> None:
        if (marked := self._current()) is not None:
            self._change(lambda: self.collection.unmark(marked.layer, marked.neuron))

    def action_note(self) -> None:
        if (marked := self._current()) is None:
            return

        def save(text: str | None) -> None:
            if text is not None:
                self._change(lambda: self.collection.set_note(marked.layer, marked.neuron, text))

        label = self.names.full(marked.layer, marked.neuron)
        self.app.push_screen(
            PromptScreen(f"Note for {label}", marked.note, "Enter saves, Escape cancels"), save
        )

    def action_undo(self) -> None:
        undo_and_say(self.collection, self)
        self._changed()

    def _follow_file(self) -> None:
        """Another explorer's marks and notes show here as they are saved."""
        try:
            changed = self.collection.refresh()
        except UserError:
            return
        if changed:
            self._changed()
            missing = set(self.collection.layers()) - set(self.loaded)
            if missing:
                self.load_layers()

    def action_export(self) -> None:
        self.export()

    def action_close(self) -> None:
        self.dismiss(None)
