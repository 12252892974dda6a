"""The status line: the layer as ``Layer N / M``, the projection (short when room is tight), the
sort and its direction, the filter, the marked count and background work first; model and device
fill what room is left (the model name is shortened first)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

SEPARATOR = " · "


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


def status_text(status: Status, width: int) -> Text:
    """The line for ``width`` cells: essentials always, the rest while it fits."""
    essentials: list[tuple[str, str]] = []
    if status.layer is not None:
        essentials.append((f"Layer {status.layer} / {status.last_layer}", "bold reverse"))
    # The projection says what the numbers mean (raw dots or cosines): it is never dropped.
    essentials.append((status.projection_short, "bold"))
    essentials.append((f"by {status.sort}", ""))
    if status.filter_text:
        essentials.append((status.filter_text, "yellow"))
    if status.marked:
        essentials.append((f"{status.marked} marked", "bold yellow"))
    if status.activity:
        essentials.append((status.activity, "italic"))

    def length(parts: list[tuple[str, str]]) -> int:
        return sum(len(text) for text, _ in parts) + len(SEPARATOR) * max(len(parts) - 1, 0)

    room = width - 1 - length(essentials)
    at = 1 if status.layer is not None else 0
    longer = len(status.projection) - len(status.projection_short)
    if longer > 0 and room - longer >= len(SEPARATOR) + len(status.device):
        essentials[at] = (status.projection, "bold")  # the full label while it fits
        room -= longer
    shown_extras = []
    if room - len(status.device) - len(SEPARATOR) >= 0:
        shown_extras.append((status.device, ""))
        room -= len(status.device) + len(SEPARATOR)
    model = status.model
    room -= len(SEPARATOR)
    if room < len(model):
        model = model[: max(room - 1, 0)] + "…" if room >= 6 else ""
    parts = ([(model, "bold")] if model else []) + shown_extras + essentials
    text = Text(" ")
    for index, (part, style) in enumerate(parts):
        if index:
            text.append(SEPARATOR)
        text.append(part, style=style)
    text.truncate(width, overflow="ellipsis")
    return text


class StatusBar(Horizontal):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; }
    StatusBar > #status-text { width: 1fr; height: 1; }
    StatusBar > #status-progress { width: 16; height: 1; display: none; }
    StatusBar.busy > #status-progress { display: block; }
    StatusBar > #status-progress Bar { width: 10; }
    StatusBar > #status-progress #percentage { width: 5; }
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

    def _draw(self) -> None:
        if self.status is None:
            return
        width = self.size.width - (16 if self.has_class("busy") else 0)
        self.query_one("#status-text", Static).update(status_text(self.status, max(width, 20)))

    def on_resize(self) -> None:
        self._draw()

    def progress(self, fraction: float | None) -> None:
        bar = self.query_one("#status-progress", ProgressBar)
        if fraction is None:
            self.remove_class("busy")
        else:
            self.add_class("busy")
            bar.update(total=100, progress=round(fraction * 100, 1))
        self._draw()
