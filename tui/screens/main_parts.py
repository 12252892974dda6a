"""What the parts of the main screen share: the screen's attributes and the methods one part calls
on another, declared once for the type checker. At run time this is a plain base class; the
screen itself (``tui.screens.main.MainScreen``) defines everything declared here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.signal import Signal

from engine.data.model import ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.results import LayerResult
from engine.data.summary import LayerSummary
from engine.data.token_index import TokenIndex
from engine.data.tokens import Vocabulary
from engine.neuron_engine import NeuronEngine
from engine.settings import Lens
from tui.state import ExplorerState

if TYPE_CHECKING:
    from textual.screen import Screen
    from textual.worker import Worker

    _Base = Screen[None]
else:
    _Base = object


class MainParts(_Base):
    engine: NeuronEngine
    against: NeuronEngine | None  # another checkpoint compared neuron by neuron (--against)
    state: ExplorerState
    info: ModelInfo | None
    vocab: Vocabulary | None
    neurons: LayerNeurons | None  # the layer on screen, derived for display
    export_dir: Path
    activity: str
    token_index: TokenIndex | None
    jacobian_lens: Lens | None  # a Jacobian lens opened before, offered again by the dialog
    summary_added: Signal[LayerSummary]

    if TYPE_CHECKING:  # defined by the parts and the screen; declared here so that each part types

        @property
        def result(self) -> LayerResult | None: ...

        def show_layer(self, layer: int) -> None: ...

        def _show_result(self, result: LayerResult, from_top: bool = False) -> None: ...

        def refresh_status(self) -> None: ...

        def jump_to_neuron(self, target: tuple[int, int] | None) -> None: ...

        def run_scanner(self) -> Worker[None]: ...

        def action_export(self) -> None: ...
