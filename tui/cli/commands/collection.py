"""``neuron-tui collection``: the neurons marked in the explorer, with their notes."""

from __future__ import annotations

import argparse

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.commands.common import said_written, unit_word
from tui.cli.options import DEFAULTS, LENS, OUTPUT, TOP_K, Command
from tui.cli.progress import StderrProgress, say


def collection(engine: NeuronEngine, settings: ScanSettings, output: str) -> int:
    """The collection marked in the explorer, with notes, statistics and top tokens."""
    marked = engine.collection(settings.units)
    if marked.warning:
        say(f"warning: {marked.warning}")
    if not len(marked):
        unit = unit_word(settings)
        raise UserError(
            f"the collection of {engine.info.name} is empty: mark {unit} in the explorer with space"
        )
    layers = marked.layers()
    with StderrProgress(layers, unit=unit_word(settings)) as progress:
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
        records = engine.collection_records(marked, settings, listener=progress)
        count = engine.write_records(output, records, engine.export_metadata(settings))
    said_written(count, layers, output, unit=unit_word(settings))
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    return collection(engine, settings, args.output)


COMMAND = Command(
    "collection",
    "Export the collection: every neuron marked in the explorer (space) for this model, across "
    "layers, with its note, statistics and top tokens (layers missing from the cache are computed).",
    (
        OUTPUT.helped(".jsonl, .json, .csv or - for JSONL on stdout (default: -)"),
        TOP_K.helped(f"tokens per list in each record (default: {DEFAULTS.top_k})"),
        LENS,
    ),
    run,
)
