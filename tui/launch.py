"""Running the explorer in the terminal with an engine that is already open."""

from __future__ import annotations

from engine.session import NeuronEngine
from engine.settings import ScanSettings


def run_explorer(engine: NeuronEngine, settings: ScanSettings, start_layer: int | None) -> int:
    from tui.app import NeuronApp

    app = NeuronApp(engine, settings, start_layer=start_layer, handle_signals=True)
    try:
        app.run()
    finally:
        for worker in app.workers:
            worker.cancel()
    return app.return_code or 0
