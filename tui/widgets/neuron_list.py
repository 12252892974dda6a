"""The neuron list: every neuron of a layer (or every feature of a layer's dictionary, as F812),
drawn line by line (Textual's Line API).

Only the visible lines are rendered, so 1,536 or 28,672 rows cost the same per frame; rows are an
index array into the layer's arrays, so sorting and filtering never copy token data.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.columns import COLUMNS, NeuronColumn
from engine.data.neurons import LayerNeurons
from engine.data.results import LayerResult
from engine.data.tokens import Vocabulary
from tui.neuron_ref import short_label
from tui.render import signed_token
from tui.widgets.scrollbar import CellScrollBars

CLASS_STYLES = {"prediction": "bold green", "suppression": "bold red", "": ""}


@dataclass(frozen=True)
class ListColumn:
    """Where a registry column sits in the list: its width, and the list width it needs."""

    column: NeuronColumn
    width: int
    min_total_width: int  # shown only when the list is at least this wide
    style: str = ""

    @property
    def title(self) -> str:
        return self.column.title


# At 80 terminal columns the list is about 55 wide: the main sort keys fit, with room for a token or
# two; skew and forms join at 120 terminal columns, coh-z and nlift on wider screens. Every column
# sorts and filters whether it is shown or not.
LIST_COLUMNS = [
    ListColumn(COLUMNS["neuron"], 6, 0),
    ListColumn(COLUMNS["max_dot"], 7, 0, "bold"),
    ListColumn(COLUMNS["null_z"], 6, 40),
    ListColumn(COLUMNS["kurtosis"], 6, 46),
    ListColumn(COLUMNS["skew"], 6, 85),
    ListColumn(COLUMNS["class"], 5, 52),
    ListColumn(COLUMNS["forms"], 5, 90),
    ListColumn(COLUMNS["coherence_z"], 5, 100),
    ListColumn(COLUMNS["lift"], 5, 0),  # these two once a corpus pass has run for the layer
    ListColumn(COLUMNS["neg_lift"], 5, 100),
    ListColumn(COLUMNS["diff_cos"], 6, 0),  # these two when another checkpoint is compared
    ListColumn(COLUMNS["diff_jaccard"], 4, 90),
]
_PASS_COLUMNS = ("lift", "neg_lift")
_EXPERT_NEURON_WIDTH = 9  # E127/1407: an expert's label and its neuron
_DIFF_COLUMNS = ("diff_cos", "diff_jaccard")


class NeuronList(CellScrollBars, ScrollView, can_focus=True):
    """Scrollable neuron rows with a cursor and marks."""

    BINDINGS = [
        Binding("down,j", "cursor_down", "Down", show=False, id="cursor-down"),
        Binding("up,k", "cursor_up", "Up", show=False, id="cursor-up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="page-down"),
        Binding("pageup", "page_up", "Page up", show=False, id="page-up"),
        Binding("home", "first", "First", show=False, id="first"),
        Binding("end,G", "last", "Last", show=False, id="last"),
        Binding("space", "toggle_mark", "Mark, next row", id="mark"),
        Binding("enter", "select", "Detail", id="detail"),
    ]

    COMPONENT_CLASSES = {"neuron-list--cursor", "neuron-list--marked", "neuron-list--header"}

    DEFAULT_CSS = """
    NeuronList { height: 1fr; overflow-x: hidden; scrollbar-size-vertical: 1; }
    NeuronList > .neuron-list--cursor { background: $accent 40%; }
    NeuronList:focus > .neuron-list--cursor { background: $accent; color: $text; }
    NeuronList > .neuron-list--marked { color: $warning; text-style: bold; }
    NeuronList > .neuron-list--header { color: $text-muted; text-style: bold; }
    """

    cursor: reactive[int] = reactive(0, always_update=True)

    class Highlighted(Message):
        def __init__(self, neuron: int | None) -> None:
            super().__init__()
            self.neuron = neuron

    class Selected(Message):
        """Enter on a row; ``neuron`` None: on no row (the layer is still on its way)."""

        def __init__(self, neuron: int | None) -> None:
            super().__init__()
            self.neuron = neuron

    class MarkToggled(Message):
        """Space on a row: the screen owns the marks and updates them. The message names the
        layer as well as the neuron: keys typed ahead (space, then ]) are handled after the layer
        on screen has changed, and the mark belongs to the row that was highlighted."""

        def __init__(self, layer: int, neuron: int) -> None:
            super().__init__()
            self.layer, self.neuron = layer, neuron

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.neurons: LayerNeurons | None = None
        self.vocab: Vocabulary | None = None
        self.order = np.zeros(0, dtype=np.int64)
        self.marked: Collection[int] = frozenset()  # read only: the screen's state owns the marks
        self.placeholder = "no layer loaded yet"
        self._read: dict[tuple[int, str], np.ndarray] = {}

    # --- data -------------------------------------------------------------------------------
    @property
    def result(self) -> LayerResult | None:
        return self.neurons.result if self.neurons is not None else None

    def show_layer(
        self, neurons: LayerNeurons, vocab: Vocabulary, order: np.ndarray, marked: Collection[int]
    ) -> None:
        same_layer = self.neurons is not None and self.neurons.layer == neurons.layer
        previous = self.current_neuron if same_layer else None
        self.neurons, self.vocab, self.marked = neurons, vocab, marked
        self.set_order(order, previous)

    def set_order(self, order: np.ndarray, keep_neuron: int | None = None) -> None:
        self.order = np.asarray(order, dtype=np.int64)
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.order) + 1)
        cursor = 0
        if keep_neuron is not None:
            hits = np.flatnonzero(self.order == keep_neuron)
            cursor = int(hits[0]) if len(hits) else 0
        self.cursor = min(cursor, max(len(self.order) - 1, 0))
        # Again once the new virtual size is laid out: scrolling before that is clamped to the old
        # one (a layer that lands after a go-to would leave its cursor row off screen).
        self.call_after_refresh(self._scroll_cursor_into_view)
        self.refresh()

    def clear(self, placeholder: str) -> None:
        self.neurons = None
        self.order = np.zeros(0, dtype=np.int64)
        self.placeholder = placeholder
        self.virtual_size = Size(self.size.width, 1)
        self.refresh()

    @property
    def current_neuron(self) -> int | None:
        if self.result is None or not len(self.order):
            return None
        return int(self.order[min(self.cursor, len(self.order) - 1)])

    @property
    def listed_neurons(self) -> list[int]:
        return self.order.tolist()

    # --- cursor -----------------------------------------------------------------------------
    def watch_cursor(self, _old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.Highlighted(self.current_neuron))

    @property
    def body_height(self) -> int:
        """Rows of neurons on screen: the visible region less the header line."""
        return max(self.scrollable_content_region.height - 1, 1)

    def _scroll_cursor_into_view(self) -> None:
        body = self.body_height
        top = self.scroll_offset.y
        # force: a list that had too few rows for a scroll bar gets one only at the next layout,
        # and until then an ordinary scroll is refused (a go-to clearing a filter lands here).
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, force=True)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False, force=True)

    def _move(self, delta: int) -> None:
        if len(self.order):
            self.cursor = int(np.clip(self.cursor + delta, 0, len(self.order) - 1))

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_page_down(self) -> None:
        self._move(max(self.body_height - 1, 1))

    def action_page_up(self) -> None:
        self._move(-max(self.body_height - 1, 1))

    def to_top(self) -> None:
        """Cursor on the first row, the view at the top (a new sort starts from its best)."""
        self.scroll_to(y=0, animate=False)
        self.cursor = 0

    def action_first(self) -> None:
        self._move(-len(self.order))

    def action_last(self) -> None:
        self._move(len(self.order))

    def action_toggle_mark(self) -> None:
        neuron = self.current_neuron
        if neuron is None or self.neurons is None:
            return
        self.post_message(self.MarkToggled(self.neurons.layer, neuron))
        self._move(1)

    def action_select(self) -> None:
        self.post_message(self.Selected(self.current_neuron))

    def on_click(self, event) -> None:
        row = event.y - 1 + self.scroll_offset.y
        if event.y >= 1 and 0 <= row < len(self.order):
            self.cursor = row
            if event.chain >= 2:
                self.action_select()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.order) + 1)
        self.call_after_refresh(self._scroll_cursor_into_view)  # once the new size is laid out

    # --- drawing ----------------------------------------------------------------------------
    @property
    def features(self) -> bool:
        """Whether the rows are a dictionary's features (F812), not neurons."""
        return self.result is not None and self.result.dictionary is not None

    def _unit_width(self) -> int:
        """The id column's width: E127/1407 among experts, F16383 for a dictionary's features."""
        if self.result is not None and self.result.experts is not None:
            return _EXPERT_NEURON_WIDTH
        if self.features and self.result is not None:
            return max(LIST_COLUMNS[0].width, len(f"F{self.result.d_mlp - 1}"))
        return LIST_COLUMNS[0].width

    def _columns(self) -> list[ListColumn]:
        has_lift = self.neurons is not None and self.neurons.lift is not None
        has_diff = self.neurons is not None and self.neurons.diff is not None
        width = self._unit_width()
        return [
            replace(c, width=width) if c.column.name == "neuron" else c
            for c in LIST_COLUMNS
            if self.size.width >= c.min_total_width
            and (c.column.name not in _PASS_COLUMNS or has_lift)
            and (c.column.name not in _DIFF_COLUMNS or has_diff)
        ]

    def _header(self) -> Text:
        text = Text("  ")
        for column in self._columns():
            title = "feat" if column.column.name == "neuron" and self.features else column.title
            text.append(
                title.ljust(column.width) if column.column.kind == "class" else title.rjust(column.width)
            )
            text.append(" ")
        colours = "" if self.app.no_color else " (green)", "" if self.app.no_color else " (red)"
        text.append(f"top tokens by |dot|: + promotes{colours[0]}, − suppresses{colours[1]}")
        return text

    def _values(self, column: NeuronColumn) -> np.ndarray:
        """A column's values for the layer shown, read once per layer (not once per row)."""
        assert self.neurons is not None
        key = (id(self.neurons), column.name)
        if key not in self._read:
            self._read = {k: v for k, v in self._read.items() if k[0] == id(self.neurons)}
            self._read[key] = column.read(self.neurons)
        return self._read[key]

    def _row(self, index: int) -> Text:
        assert self.neurons is not None and self.vocab is not None
        neuron = int(self.order[index])
        result = self.neurons.result
        marked = neuron in self.marked
        text = Text("● " if marked else "  ")
        for listed in self._columns():
            column = listed.column
            value = self._values(column)[neuron]
            if column.name == "null_z" and self.neurons.null_z is None:
                cell = ""  # not known until the null baseline is: blank, not 0
            elif column.name == "neuron" and self.features:
                cell = f"F{neuron}"
            elif column.name == "neuron":
                cell = short_label(neuron, self.neurons.result.experts)  # E5/301 among experts
            else:
                cell = column.cell(value)
            if column.kind == "class":
                text.append(cell.ljust(listed.width), style=CLASS_STYLES[str(value)])
            else:
                text.append(cell.rjust(listed.width), style=listed.style)
            text.append(" ")
        for rank in range(result.top_k):
            token = self.vocab.text(int(result.top_ids[neuron, rank]))
            text.append_text(signed_token(token, float(result.top_dots[neuron, rank])))
            text.append("  ")
            if text.cell_len > self.size.width:
                break
        return text

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = self._header() if self.result is not None else Text(self.placeholder)
            return self._strip(header, width, base + self.get_component_rich_style("neuron-list--header"))
        index = self.scroll_offset.y + y - 1
        if self.result is None or index >= len(self.order):
            return Strip.blank(width, base)
        style = base
        if int(self.order[index]) in self.marked:
            style += self.get_component_rich_style("neuron-list--marked")
        if index == self.cursor:
            style += self.get_component_rich_style("neuron-list--cursor")
        return self._strip(self._row(index), width, style)

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        text.truncate(width, overflow="ellipsis")
        segments = [
            Segment(seg.text, style + seg.style if seg.style else style)
            for seg in text.render(self.app.console)
        ]
        return Strip(segments).extend_cell_length(width, style).crop(0, width)
