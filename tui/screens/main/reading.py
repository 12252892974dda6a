"""How the numbers are read (p): the projection flags and the lens. The dialog chooses; a Jacobian
lens fitted here is opened in a worker (tens of MB); the lens switched away from is offered again
without reopening. It draws nothing: the choice goes up as ``Reading.Chosen``."""

from __future__ import annotations

from textual import work
from textual.message import Message
from textual.widget import Widget
from textual.worker import Worker

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import LOGIT_LENS, Lens, Projection
from tui.messages import report_failure
from tui.state import ExplorerState


class Reading(Widget):
    DEFAULT_CSS = "Reading { display: none; }"

    class Chosen(Message):
        def __init__(self, projection: Projection, lens: Lens) -> None:
            super().__init__()
            self.projection, self.lens = projection, lens

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(self, event)  # up to the screen, which says so

    def __init__(self, engine: NeuronEngine, state: ExplorerState) -> None:
        super().__init__()
        self.engine, self.state = engine, state
        self.remembered: Lens | None = None  # a Jacobian lens switched away from, offered again

    def ask(self) -> None:
        from tui.screens.projection import ProjectionScreen

        _lens, description = self._jacobian_at_hand()
        settings = self.state.settings
        screen = ProjectionScreen(settings.projection, settings.lens.digest is not None, description)
        self.app.push_screen(screen, self._chosen)

    def _jacobian_at_hand(self) -> tuple[Lens | None, str | None]:
        """The Jacobian lens the dialog can offer, and its description: the one in use or opened
        before, else the newest fitted here (opened when chosen); (None, None) when there is none."""
        for lens in (self.state.settings.lens, self.remembered):
            if lens is not None and lens.digest is not None:
                lens_file = self.engine.lens_file(lens)
                return lens, lens_file.description if lens_file is not None else lens.label
        fits = self.engine.fitted_lenses()
        return (None, f"the newest fitted here: {fits[0].name}") if fits else (None, None)

    def _chosen(self, reading: tuple[Projection, bool] | None) -> None:
        if reading is None:
            return
        projection, jacobian = reading
        if not jacobian:
            if self.state.settings.lens.digest is not None:
                self.remembered = self.state.settings.lens  # offered again without reopening
            self.post_message(self.Chosen(projection, LOGIT_LENS))
            return
        lens, _description = self._jacobian_at_hand()
        if lens is not None:
            self.post_message(self.Chosen(projection, lens))
        else:
            self._open_fitted_lens(projection)

    @work(thread=True, exclusive=True, group="lens", exit_on_error=False)
    def _open_fitted_lens(self, projection: Projection) -> None:
        """Read the newest fitted lens off the event loop, then switch to it."""
        try:
            lens = self.engine.open_lens("jacobian")
        except UserError as error:
            self.app.call_from_thread(self.notify, str(error), severity="error")
            return
        self.post_message(self.Chosen(projection, lens))
