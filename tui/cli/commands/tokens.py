"""``neuron-tui tokens``: the neurons aimed hardest at each given token, exact from the weights."""

from __future__ import annotations

import argparse

from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.answers import token_rows
from tui.cli.commands.common import print_rows
from tui.cli.options import LAYERS, LENS, OUTPUT, TOP_K, Command, Option, count


def tokens(
    engine: NeuronEngine,
    settings: ScanSettings,
    layers: list[int],
    texts: list[str],
    top: int,
    exact_only: bool,
    output: str,
) -> int:
    rows = token_rows(engine, settings, layers, texts, top, exact_only)
    if output == "-":
        print_rows(rows)
    else:
        engine.write_rows(output, rows, engine.export_metadata(settings), key="tokens")
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    return tokens(engine, settings, layers, args.texts, args.top, args.exact_only, args.output)


COMMAND = Command(
    "tokens",
    "For each TEXT, find the matching tokens (the exact string first, then variants with or "
    "without a leading space, other casings, Ġ/▁ read as a space) and print each token's N "
    "neurons with the largest |dot| over the requested layers, exact in float64, as JSONL "
    'records {"query", "token_id", "token", "exact", "layer", "neuron", "dot"}; in a layer of '
    'experts also "expert", and "neuron" counts within it.',
    (
        Option(
            "texts",
            ("texts",),
            None,
            dict(nargs="+", metavar="TEXT", help="token text, e.g. ' the' or coming"),
        ),
        count("top", "--top", 10, "neurons per token"),
        Option(
            "exact_only",
            ("--exact-only",),
            None,
            dict(action="store_true", help="only the tokens whose text equals TEXT exactly"),
        ),
        LAYERS,
        OUTPUT,
        TOP_K.helped(argparse.SUPPRESS),
        LENS,
    ),
    run,
)
