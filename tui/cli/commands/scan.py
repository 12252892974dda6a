"""``neuron-tui scan``: every neuron's projection onto the vocabulary, one record per neuron."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator

from engine.data.inputs import LayerInputs
from engine.data.results import LayerResult
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine, Ranks
from engine.settings import ScanSettings
from tui.cli.commands.common import said_written, unit_word
from tui.cli.options import DEFAULTS, LAYERS, LENS, OUTPUT, TOP_K, Command
from tui.cli.progress import StderrProgress, say


def _input_side(
    engine: NeuronEngine, layer: int, settings: ScanSettings, progress: StderrProgress
) -> LayerInputs | None:
    """The layer's input side for its records (its computing said on stderr), or None (said once)
    where the weights lack it."""
    try:
        return engine.inputs(layer, settings, listener=progress.inputs)
    except UserError as error:
        engine.warn(f"records carry no input side: {error}")
        return None


def _records(
    engine: NeuronEngine, settings: ScanSettings, results: Iterable[LayerResult], progress: StderrProgress
) -> Iterator[dict]:
    """One layer in memory at a time: its records are written before the next is scanned."""
    for result in results:
        # The input side compares MLP input rows with the embeddings: the neurons' own (without
        # it, the progress said each layer as its scan finished).
        inputs = None
        if not settings.units.is_dictionary:
            inputs = _input_side(engine, result.layer, settings, progress)
            progress.layer_done(result.layer)
        yield from engine.neuron_records(engine.derive(result, settings, inputs=inputs), None, settings)


def scan(engine: NeuronEngine, settings: ScanSettings, layers: list[int], output: str) -> int:
    with engine.process_ranks() as ranks:
        if ranks.world > 1:
            return _scan_across_ranks(engine, settings, layers, output, ranks)
    unit = unit_word(settings)
    with StderrProgress(layers, inputs=not settings.units.is_dictionary, unit=unit) as progress:
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
        results = engine.layers(layers, settings, listener=progress)
        records = _records(engine, settings, results, progress)
        count = engine.write_records(output, records, engine.export_metadata(settings))
    said_written(count, layers, output, unit=unit)
    return 0


def _scan_across_ranks(
    engine: NeuronEngine, settings: ScanSettings, layers: list[int], output: str, ranks: Ranks
) -> int:
    """Under torchrun: the engine splits the layers over the ranks; rank 0 writes the output,
    which is byte-identical to one process's."""
    with StderrProgress(layers, inputs=True) as progress:
        results = engine.scan_across_ranks(layers, settings, ranks, listener=progress, said=say)
        if results is None:
            return 0  # another rank writes
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
        records = _records(engine, settings, results, progress)
        count = engine.write_records(output, records, engine.export_metadata(settings))
    said_written(count, layers, output, f" ({ranks.world} ranks)")
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    return scan(engine, settings, layers, args.output)


COMMAND = Command(
    "scan",
    "Compute (or read from the cache) every neuron's projection onto the vocabulary and write one "
    "record per neuron: model, layer, neuron, max_dot, top (tokens by |dot|, signed), promote, "
    "suppress, norm, mean, std, skew, kurtosis, class, null_z, null_pct.",
    (
        LAYERS,
        OUTPUT.helped(
            ".jsonl (one object per neuron), .json (settings + neurons), .csv (one row per neuron) "
            "or - for JSONL on stdout (default: -)"
        ),
        TOP_K.helped(f"tokens kept per neuron (default: {DEFAULTS.top_k})"),
        LENS,
    ),
    run,
    epilog="Progress goes to stderr. Bad input exits 2 with one line; "
    "Ctrl-C exits 130 and keeps the cache intact.",
)
