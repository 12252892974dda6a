"""The status line of the main screen: what is on screen, how it is sorted and filtered, and what
the background is doing."""

from __future__ import annotations

from engine.settings import ScanSettings
from tui.messages import Activity
from tui.screens.main_parts import MainParts
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.status_bar import Status, StatusBar


def reading_label(settings: ScanSettings, short: bool = False) -> str:
    """The projection, and the lens where it is not the logit lens: what the numbers mean."""
    projection = settings.projection.short_label if short else settings.projection.label
    if settings.lens.digest is None:
        return projection
    lens = settings.lens.short_label if short else f"{settings.lens.short_label} {settings.lens.digest[:8]}"
    return f"{lens} {projection}"


class StatusLine(MainParts):
    def refresh_status(self) -> None:
        if not self.is_mounted:
            return
        state = self.state
        status = Status(
            model=self._model_label(),
            device=self.engine.device_label(),
            projection=reading_label(state.settings),
            projection_short=reading_label(state.settings, short=True),
            layer=state.layer,
            last_layer=state.n_layers - 1 if state.n_layers else 0,
            marked=len(state.collection) if state.collection is not None else 0,
            activity=self.activity,
            sort=state.sort_label,
            filter_text="filter " + ", ".join(map(str, state.conditions)) if state.conditions else "",
        )
        self.query_one(StatusBar).show(status)

    def _model_label(self) -> str:
        name = self.info.name if self.info else self.engine.location.display_name
        against = self.against
        return name if against is None else f"{name} vs {against.location.display_name}"

    def on_activity(self, message: Activity) -> None:
        self.activity = message.text
        self.query_one(StatusBar).progress(message.fraction)
        if self.query(LayerPicker):
            self.query_one(LayerPicker).set_computing(message.layer)
        self.refresh_status()
