from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine.session import EngineOptions, NeuronEngine
from engine.settings import ScanSettings
from tui.app import NeuronApp


def make_app(model: Path, cache: Path, export_dir: Path | None = None, **options) -> NeuronApp:
    settings = options.pop("settings", ScanSettings())
    engine = NeuronEngine(EngineOptions(model=str(model), device=options.pop("device", "cpu"), cache_dir=cache, settings=settings, **options))
    return NeuronApp(engine, export_dir=export_dir)


async def wait_for(pilot, predicate, timeout: float = 60.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(step)


def all_computed(app: NeuronApp) -> bool:
    return app.activity.startswith("all ") and app.null is not None and app.result is not None


async def settle(pilot, app: NeuronApp) -> None:
    """Wait until every layer and the null baseline are in, and the screen has redrawn."""
    await wait_for(pilot, lambda: all_computed(app))
    await pilot.pause(0.2)
    await asyncio.sleep(0)
