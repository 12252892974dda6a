"""``neuron-tui layers``: one row per layer, the layer's numbers in a few quantiles and counts."""

from __future__ import annotations

import argparse

from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.answers import layer_rows
from tui.cli.commands.common import derived_layers
from tui.cli.options import LAYERS, LENS, OUTPUT, TOP_K, Command

_COLUMNS = (
    "layer",
    "p50",
    "p90",
    "p99",
    "max",
    "kurtosis_p50",
    "kurtosis_p99",
    "n_standout",
    "n_prediction",
    "n_suppression",
    "n_one_token",
)


def layer_table(engine: NeuronEngine, settings: ScanSettings, layers: list[int], output: str) -> int:
    rows = layer_rows(derived_layers(engine, settings, layers), settings)
    metadata = engine.export_metadata(settings)
    if output != "-":
        engine.write_rows(output, rows, metadata, key="layers")
        return 0
    units = f" · features of {settings.units.name}" if settings.units.is_dictionary else ""
    print(f"# {metadata['model']} · projection {metadata['projection']}{units}")
    print("\t".join(_COLUMNS))
    for row in rows:
        print("\t".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in _COLUMNS))
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    return layer_table(engine, settings, layers, args.output)


COMMAND = Command(
    "layers",
    "One row per layer: max-dot quantiles (p50, p90, p99, max), kurtosis p50/p99, neurons whose "
    "max-dot per unit norm is more than 3 null standard deviations up, and prediction/suppression "
    "neuron counts (kurtosis > 10). Computes missing layers.",
    (LAYERS, OUTPUT.helped(".jsonl, .json, .csv or - for a table on stdout (default: -)"), TOP_K, LENS),
    run,
)
