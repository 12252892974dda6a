"""The status line: model, device, projection, the current layer as ``Layer N / M``, marks, and
what is being computed in the background."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static


class StatusBar(Horizontal):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; }
    StatusBar > #status-text { width: 1fr; height: 1; }
    StatusBar > #status-progress { width: 16; height: 1; display: none; }
    StatusBar.busy > #status-progress { display: block; }
    StatusBar > #status-progress Bar { width: 10; }
    StatusBar > #status-progress #percentage { width: 5; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="status-text")
        yield ProgressBar(total=100, show_eta=False, id="status-progress")

    def show(
        self,
        model: str,
        device: str,
        projection: str,
        layer: int | None,
        last_layer: int,
        marked: int,
        activity: str,
        sort: str,
        filter_text: str,
    ) -> None:
        text = Text()
        text.append(f" {model}", style="bold")
        text.append(f" · {device} · {projection}")
        if layer is not None:
            text.append(" · ")
            text.append(f"Layer {layer} / {last_layer}", style="bold reverse")
        text.append(f" · by {sort}")
        if filter_text:
            text.append(f" · {filter_text}", style="yellow")
        if marked:
            text.append(f" · {marked} marked", style="bold yellow")
        if activity:
            text.append(f" · {activity}", style="italic")
        self.query_one("#status-text", Static).update(text)

    def progress(self, fraction: float | None) -> None:
        bar = self.query_one("#status-progress", ProgressBar)
        if fraction is None:
            self.remove_class("busy")
        else:
            self.add_class("busy")
            bar.update(total=100, progress=round(fraction * 100, 1))
