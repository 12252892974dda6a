"""What several headless commands do alike: read whole layers, say what was written, print rows."""

from __future__ import annotations

import json

from engine.data.neurons import LayerNeurons
from engine.neuron_engine import NeuronEngine, Ranks
from engine.settings import ScanSettings
from tui.cli.progress import StderrProgress, say


def derived_layers(engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> list[LayerNeurons]:
    """The layers, from the cache or computed (progress on stderr), each derived against the null."""
    with StderrProgress(layers, unit=unit_word(settings)) as progress:
        results = list(engine.layers(layers, settings, listener=progress))
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
    return [engine.derive(result, settings) for result in results]


def said_written(count: int, layers: list[int], output: str, how: str = "", unit: str = "neurons") -> None:
    """The line that ends a command which wrote a file (nothing for stdout: it is the output)."""
    if output != "-":
        say(f"wrote {count} {unit} from {len(layers)} layer(s) to {output}{how}")


def unit_word(settings: ScanSettings) -> str:
    """What the records are: neurons, or a dictionary's features."""
    return "features" if settings.units.is_dictionary else "neurons"


def print_rows(rows: list[dict], settings: dict | None = None) -> None:
    """JSONL on stdout, each row with ``settings`` when given."""
    for row in rows:
        print(json.dumps(row if settings is None else {**row, "settings": settings}, ensure_ascii=False))


def rank_prefix(ranks: Ranks) -> str:
    """What each progress line of this process starts with: its rank, when there are several."""
    return f"rank {ranks.rank}/{ranks.world}: " if ranks.world > 1 else ""
