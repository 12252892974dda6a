"""The main screen's status line: what is on screen, how it is read, sorted and filtered, what is
marked, and what the background is doing (the line itself, and how it shortens, is
``tui.widgets.status_bar``)."""

from __future__ import annotations

from engine.data.neurons import LayerNeurons
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.state import ExplorerState
from tui.widgets.status_bar import Status, StatusBar


def reading_label(settings: ScanSettings, short: bool = False) -> str:
    """The projection, and the lens where it is not the logit lens: what the numbers mean."""
    projection = settings.projection.short_label if short else settings.projection.label
    if settings.lens.digest is None:
        return projection
    lens = settings.lens.short_label if short else f"{settings.lens.short_label} {settings.lens.digest[:8]}"
    return f"{lens} {projection}"


def units_label(settings: ScanSettings) -> str:
    """The kind of unit listed: "neurons", or "features: <dictionary set>"."""
    return f"features: {settings.units.name}" if settings.units.is_dictionary else "neurons"


class StatusLine(StatusBar):
    def __init__(self, engine: NeuronEngine, state: ExplorerState, against: NeuronEngine | None) -> None:
        super().__init__(id="status")
        self.engine, self.state, self.against = engine, state, against
        self.activity = ""  # what the background is doing, in words
        self.neurons: LayerNeurons | None = None  # what the list shows: the sort in effect is its

    def on_mount(self) -> None:
        self.update_line()

    def showing(self, neurons: LayerNeurons | None) -> None:
        self.neurons = neurons
        self.update_line()

    def set_activity(self, text: str, fraction: float | None) -> None:
        self.activity = text
        self.progress(fraction)
        self.update_line()

    def update_line(self) -> None:
        if not self.is_mounted:
            return
        state = self.state
        self.show(
            Status(
                model=self._model_label(),
                device=self.engine.device_label(),
                projection=reading_label(state.settings),
                projection_short=reading_label(state.settings, short=True),
                layer=state.layer,
                last_layer=state.n_layers - 1 if state.n_layers else 0,
                marked=len(state.collection) if state.collection is not None else 0,
                activity=self.activity,
                sort=state.sort_label(self.neurons),
                filter_text="filter " + ", ".join(map(str, state.conditions)) if state.conditions else "",
                units=units_label(state.settings) if state.dictionary is not None else "",
            )
        )

    def _model_label(self) -> str:
        name = self.state.info.name if self.state.info else self.engine.location.display_name
        return name if self.against is None else f"{name} vs {self.against.location.display_name}"
