"""The status line. Left to right: the model, the device, ``Layer N / M``, the kind of unit listed
(with a dictionary open: ``neurons``, or ``features: <set>``), the projection, the sort and its
direction, the filter, the marked count, and what the background is doing.

When the line is longer than its width it gives way in this order, a step at a time, until it fits:

 1. the model name is shortened (to no fewer than 6 cells),
 2. then dropped;
 3. the projection's full label gives way to its short one (``fold+ctr+cos``);
 4. the device is dropped;
 5. the background work is shortened (to no fewer than 12 cells),
 6. and the filter too (to no fewer than 10);
 7. ``Layer 29 / 29`` becomes ``L29/29`` and the sort loses its ``by``;
 8. the background work is dropped (the progress beside the line, if any, still says how far);
 9. the filter becomes ``filter…`` (one is on);
 10. the sort is dropped;
 11. the dictionary set's name is shortened (to ``features: …``);

and if it is still too long the line is cut at its end, the marked count kept. The layer, the
projection, the kind of unit and the marked count are never dropped. A part is shortened only as
far as the line needs, and only once every step before it has been taken.

Beside the line, background work with a known fraction shows as a progress bar with its percentage
from 100 columns, and as the percentage alone below (the line needs the room).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

SEPARATOR = " · "
MODEL_FLOOR = 6  # a model name shortened to fewer cells says nothing
ACTIVITY_FLOOR = 12  # "corpus pass…", "computing l…"
FILTER_FLOOR = 10  # "filter kur…"
UNITS_FLOOR = 11  # "features: …"
WIDE = 100  # from this many columns the progress shows as a bar, not its percentage alone


@dataclass(frozen=True)
class Status:
    model: str
    device: str
    projection: str
    projection_short: str
    layer: int | None
    last_layer: int
    marked: int
    activity: str
    sort: str
    filter_text: str
    units: str = ""  # "" without a dictionary: only the neurons can be listed


@dataclass(frozen=True)
class _Line:
    """The parts as shown now; an empty part is left out."""

    model: str
    device: str
    layer: str
    projection: str
    sort: str
    filter_text: str
    marked: str
    activity: str
    units: str = ""

    def parts(self) -> list[tuple[str, str]]:
        """(text, style) in order, the empty ones left out."""
        styled = [
            (self.model, "bold"),
            (self.device, ""),
            (self.layer, "bold reverse"),
            (self.units, "bold"),
            (self.projection, "bold"),
            (self.sort, ""),
            (self.filter_text, "yellow"),
            (self.marked, "bold yellow"),
            (self.activity, "italic"),
        ]
        return [(text, style) for text, style in styled if text]

    @property
    def length(self) -> int:
        """Cells, with the leading space."""
        parts = self.parts()
        return 1 + sum(len(text) for text, _ in parts) + len(SEPARATOR) * max(len(parts) - 1, 0)


def _shorten(text: str, over: int, floor: int) -> str:
    """``text`` ``over`` cells shorter (ending in …), but no shorter than ``floor`` cells."""
    keep = max(floor, len(text) - over)
    return text if keep >= len(text) else text[: keep - 1] + "…"


# How short a part may get: the background work and the filter say what they are in this much.
FLOORS = {"model": MODEL_FLOOR, "activity": ACTIVITY_FLOOR, "filter_text": FILTER_FLOOR, "units": UNITS_FLOOR}
Stage = tuple[Callable[[_Line], _Line], tuple[str, ...]]  # a change, then the parts that may shorten


def _stages(status: Status) -> list[Stage]:
    """The steps of the module docstring, as stages: each makes its change to the line before it,
    then names the parts that may be shortened (in that order) to make it fit."""
    compact_layer = f"L{status.layer}/{status.last_layer}" if status.layer is not None else ""
    return [
        (lambda line: line, ("model",)),
        (lambda line: replace(line, model=""), ()),
        (lambda line: replace(line, projection=status.projection_short), ()),
        (lambda line: replace(line, device=""), ()),
        (lambda line: line, ("activity",)),
        (lambda line: line, ("activity", "filter_text")),
        (
            lambda line: replace(line, layer=compact_layer, sort=line.sort.removeprefix("by ")),
            ("activity", "filter_text"),
        ),
        (lambda line: replace(line, activity=""), ("filter_text",)),
        (lambda line: replace(line, filter_text="filter…" if line.filter_text else ""), ()),
        (lambda line: replace(line, sort=""), ()),
        (lambda line: line, ("units",)),
    ]


def _fitted(line: _Line, shorten: tuple[str, ...], width: int) -> _Line:
    """``line`` with the ``shorten`` parts cut, in order, as far as it needs (to their floors)."""
    for name in shorten:
        over = line.length - width
        if over <= 0:
            break
        line = replace(line, **{name: _shorten(getattr(line, name), over, FLOORS[name])})
    return line


def _cut(line: _Line, width: int) -> Text:
    """The line at ``width`` cells, cut at its end but for the marked count, which stays."""
    text = _render(replace(line, marked=""))
    if not line.marked:
        text.truncate(width, overflow="ellipsis")
        return text
    tail = Text(SEPARATOR)
    tail.append(line.marked, style="bold yellow")
    text.truncate(max(width - tail.cell_len, 1), overflow="ellipsis")
    return text + tail


def _render(line: _Line) -> Text:
    text = Text(" ")
    for index, (part, style) in enumerate(line.parts()):
        if index:
            text.append(SEPARATOR)
        text.append(part, style=style)
    return text


def status_text(status: Status, width: int) -> Text:
    """The line for ``width`` cells, given way in the stated order until it fits."""
    line = _Line(
        model=status.model,
        device=status.device,
        layer=f"Layer {status.layer} / {status.last_layer}" if status.layer is not None else "",
        projection=status.projection,
        sort=f"by {status.sort}",
        filter_text=status.filter_text,
        marked=f"{status.marked} marked" if status.marked else "",
        activity=status.activity,
        units=status.units,
    )
    fitted = line
    for change, shorten in _stages(status):
        line = change(line)
        fitted = _fitted(line, shorten, width)
        if fitted.length <= width:
            return _render(fitted)
    return _cut(fitted, width)  # every part as short as it gets


class StatusBar(Horizontal):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; }
    StatusBar > #status-text { width: 1fr; height: 1; }
    StatusBar > #status-progress { width: 16; height: 1; display: none; }
    StatusBar.busy > #status-progress { display: block; }
    StatusBar > #status-progress Bar { width: 10; }
    StatusBar > #status-progress #percentage { width: 5; }
    StatusBar.-percentage-only > #status-progress { width: 6; }
    StatusBar.-percentage-only > #status-progress Bar { display: none; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.status: Status | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="status-text")
        yield ProgressBar(total=100, show_eta=False, id="status-progress")

    def show(self, status: Status) -> None:
        self.status = status
        self._draw()

    def progress_cells(self) -> int:
        """Cells the progress takes beside the line (none when there is nothing to show)."""
        if not self.has_class("busy"):
            return 0
        return 6 if self.has_class("-percentage-only") else 16

    def _draw(self) -> None:
        if self.status is None:
            return
        width = self.size.width - self.progress_cells()
        self.query_one("#status-text", Static).update(status_text(self.status, max(width, 20)))

    def on_resize(self) -> None:
        self.set_class(self.size.width < WIDE, "-percentage-only")
        self._draw()

    def progress(self, fraction: float | None) -> None:
        bar = self.query_one("#status-progress", ProgressBar)
        if fraction is None:
            self.remove_class("busy")
        else:
            self.add_class("busy")
            bar.update(total=100, progress=round(fraction * 100, 1))
        self._draw()
