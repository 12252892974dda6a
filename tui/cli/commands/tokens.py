"""``neuron-tui tokens``: the neurons aimed hardest at each given token, exact from the weights."""

from __future__ import annotations

import argparse

from engine.data.experts import record_fields
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.commands.common import print_rows
from tui.cli.options import LAYERS, LENS, OUTPUT, TOP_K, Command, Option, count


def _queries(engine: NeuronEngine, texts: list[str], exact_only: bool) -> list[tuple[str, list]]:
    """Each text with the tokens that match it; one line for a text that matches none."""
    from engine.data.token_index import TokenIndex

    index = TokenIndex(engine.vocabulary)
    queries = []
    for text in texts:
        matches = [m for m in index.find(text) if m.exact or not exact_only]
        if not matches:
            raise UserError(
                f"no token matches {text!r}: check the spelling (a leading space matters, e.g. ' the')"
            )
        queries.append((text, matches))
    return queries


def tokens(
    engine: NeuronEngine,
    settings: ScanSettings,
    layers: list[int],
    texts: list[str],
    top: int,
    exact_only: bool,
    output: str,
) -> int:
    queries = _queries(engine, texts, exact_only)
    # Exact from the weights: one float64 product per layer, no scan needed (seconds, not minutes).
    token_ids = sorted({m.token_id for _, matches in queries for m in matches})
    found = engine.exact_token_neurons(token_ids, layers, top, settings)
    dictionaries = {layer: info.name for layer, info in engine.dictionary_infos(settings.units).items()}
    vocab = engine.vocabulary
    rows = [
        {
            "query": text,
            "token_id": m.token_id,
            "token": vocab.text(m.token_id),
            "exact": m.exact,
            "layer": hit.layer,
            # its expert, among experts; a dictionary's feature
            **record_fields(hit.neuron, engine.info.experts(hit.layer), dictionaries.get(hit.layer)),
            "dot": hit.dot,
        }
        for text, matches in queries
        for m in matches
        for hit in found[m.token_id]
    ]
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
