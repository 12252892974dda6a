"""``neuron-tui probe``: the model on one text, the neurons that fire hardest at each token."""

from __future__ import annotations

import argparse

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.answers import probe_rows
from tui.cli.commands.attribute import read_text
from tui.cli.commands.common import print_rows
from tui.cli.options import LAYERS, OUTPUT, TEXT_OPTIONS, TOP_K, Command, count
from tui.cli.progress import say

DEFAULT_TOP = 3  # as many per token and layer as the explorer's text probe shows


def probe(
    engine: NeuronEngine, settings: ScanSettings, layers: list[int], text: str, top: int, output: str
) -> int:
    if output.lower().endswith(".csv"):
        raise UserError(f"probe writes .jsonl or .json (each record nests its layers), not {output}")
    firing, promoted = engine.probe(text, layers, top, settings)
    metadata = {**engine.export_metadata(settings), "scale": firing.scale, "top": top}
    rows = [{"model": engine.info.name, **row} for row in probe_rows(engine, firing, promoted, settings)]
    if output == "-":
        print_rows(rows, metadata)
    else:
        engine.write_rows(output, rows, metadata, key="tokens")
        say(f"wrote {len(rows)} tokens to {output}")
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    text = read_text(args.text, args.text_file)
    return probe(engine, settings, layers, text, args.top, args.output)


COMMAND = Command(
    "probe",
    "Run the model on a text and record, per token, the --top neurons of each layer that fire "
    "hardest for themselves (activation divided by the neuron's own scale: its corpus quantile "
    "when a corpus pass is cached, else this text's), each with the token its weights promote most "
    "and the one they suppress most when the layer's scan is cached. Position 0 and special tokens "
    'are "marked": they sit on another scale.',
    (
        *TEXT_OPTIONS,
        count("top", "--top", DEFAULT_TOP, "neurons per token and layer", metavar="K"),
        LAYERS,
        OUTPUT.helped(".jsonl (one object per token), .json or - for JSONL on stdout (default: -)"),
        TOP_K.helped(argparse.SUPPRESS),
    ),
    run,
)
