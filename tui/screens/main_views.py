"""The views the main screen opens: all layers, the collection, the text probe, the token search,
coverage and the projection dialog.

A part of ``MainScreen`` (a mixin on ``MainParts``); its methods run as the screen's own.
"""

from __future__ import annotations

from textual import work

from engine.data.neurons import LayerNeurons
from engine.errors import UserError
from engine.settings import LOGIT_LENS, Lens, Projection
from tui.screens.main_parts import MainParts
from tui.screens.main_status import reading_label
from tui.widgets.layer_picker import LayerPicker


class OtherViews(MainParts):
    def action_all_layers(self) -> None:
        from tui.screens.all_layers import AllLayersScreen

        if self.info is None:
            return
        screen = AllLayersScreen(
            self.info.name,
            reading_label(self.state.settings),
            self.info.n_layers,
            self.state.summaries,
            self.state.layer,
            self.summary_added,
        )
        self.app.push_screen(screen, self._jump_to_layer)

    def _jump_to_layer(self, layer: int | None) -> None:
        if layer is not None:
            self.show_layer(layer)

    def action_collection(self) -> None:
        from tui.screens.collection import CollectionScreen

        collection = self.state.collection
        if collection is None or self.info is None or self.vocab is None:
            return
        settings = self.state.settings

        def layer_neurons(layer: int) -> LayerNeurons:
            return self.engine.neurons(layer, settings)

        screen = CollectionScreen(self.info.name, collection, self.vocab, layer_neurons, self.action_export)
        self.app.push_screen(screen, self._open_collected)

    def _open_collected(self, target: tuple[int, int] | None) -> None:
        if target is not None:
            self.state.pending_detail = True
            self.jump_to_neuron(target)

    def action_text_probe(self) -> None:
        from tui.screens.text_probe import TextProbeScreen

        if self.vocab is None or self.info is None or self.state.layer is None:
            return
        # What the probe's worker may read, taken here on the event loop: workers never read the state.
        engine, settings, held = self.engine, self.state.settings, dict(self.state.results)

        def probe(text: str, layers: list[int], top: int):
            return engine.probe(text, layers, top, settings, held)

        def probe_layer(layer: int):
            return lambda text: engine.probe_layer(text, layer)

        screen = TextProbeScreen(self.state.layer, self.info.n_layers, self.vocab, probe, probe_layer)
        self.app.push_screen(screen, self._open_collected)

    def action_token_search(self) -> None:
        from engine.data.token_index import TokenIndex
        from tui.screens.token_search import TokenSearchScreen

        if self.vocab is None or self.info is None:
            return
        if self.token_index is None:
            self.token_index = TokenIndex(self.vocab)
        tables = dict(sorted(self.state.token_tables.items()))
        self.app.push_screen(
            TokenSearchScreen(self.token_index, tables, self.info.n_layers), self.jump_to_neuron
        )

    def action_coverage(self) -> None:
        from engine.data.coverage import coverage_from_layers
        from tui.screens.coverage import CoverageScreen

        if self.info is None or self.vocab is None:
            return
        if self.state.null is None or not self.state.unit_best:
            self.notify(
                "coverage needs the null baseline and at least one computed layer: still computing",
                severity="warning",
            )
            return
        coverage = coverage_from_layers(self.state.unit_best, self.state.null)
        label = reading_label(self.state.settings)
        screen = CoverageScreen(self.info.name, label, coverage, self.vocab, self.info.n_layers)
        self.app.push_screen(screen, self.jump_to_neuron)

    def _jacobian_at_hand(self) -> tuple[Lens | None, str | None]:
        """The Jacobian lens the dialog can offer, and its description: the one in use or opened
        before, else the newest fitted here (opened when chosen); (None, None) when there is none."""
        for lens in (self.state.settings.lens, self.jacobian_lens):
            if lens is not None and lens.digest is not None:
                lens_file = self.engine.lens_file(lens)
                return lens, lens_file.description if lens_file is not None else lens.label
        fits = self.engine.fitted_lenses()
        return (None, f"the newest fitted here: {fits[0].name}") if fits else (None, None)

    def action_projection(self) -> None:
        from tui.screens.projection import ProjectionScreen

        _lens, description = self._jacobian_at_hand()
        settings = self.state.settings
        screen = ProjectionScreen(settings.projection, settings.lens.digest is not None, description)
        self.app.push_screen(screen, self.apply_reading)

    def apply_reading(self, reading: tuple[Projection, bool] | None) -> None:
        if reading is None:
            return
        projection, jacobian = reading
        if not jacobian:
            if self.state.settings.lens.digest is not None:
                self.jacobian_lens = self.state.settings.lens  # offered again without reopening
            self.apply_projection(projection, LOGIT_LENS)
            return
        lens, _description = self._jacobian_at_hand()
        if lens is not None:
            self.apply_projection(projection, lens)
        else:
            self._open_fitted_lens(projection)

    @work(thread=True, exclusive=True, group="lens", exit_on_error=False)
    def _open_fitted_lens(self, projection: Projection) -> None:
        """Read the newest fitted lens off the event loop (tens of MB), then switch to it."""
        try:
            lens = self.engine.open_lens("jacobian")
        except UserError as error:
            self.app.call_from_thread(self.notify, str(error), severity="error")
            return
        self.app.call_from_thread(self.apply_projection, projection, lens)

    def apply_projection(self, projection: Projection | None, lens: Lens | None = None) -> None:
        """Switch projection (and lens): every layer is read from the cache or computed again under it."""
        if projection is None or self.info is None or not self.state.switch_projection(projection, lens):
            return
        self.neurons = None
        self.query_one(LayerPicker).clear_summaries()
        if self.state.layer is not None:
            self.show_layer(self.state.layer)
        self.run_scanner()
