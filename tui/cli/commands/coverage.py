"""``neuron-tui coverage``: does every token have a neuron aimed at it?"""

from __future__ import annotations

import argparse

from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.commands.common import derived_layers
from tui.cli.options import LAYERS, LENS, OUTPUT, TOP_K, Command, count


def coverage(engine: NeuronEngine, settings: ScanSettings, layers: list[int], show: int, output: str) -> int:
    from engine.data.coverage import compute_coverage, coverage_document, token_row

    neurons = derived_layers(engine, settings, layers)
    found = compute_coverage([n.result for n in neurons], engine.null_baseline(settings))
    vocab = engine.vocabulary
    metadata = engine.export_metadata(settings)
    document = coverage_document(found, vocab, show)
    if output == "-":
        _print_coverage(document, metadata)
    elif output.lower().endswith(".json"):
        engine.write_document(output, {"settings": metadata, **document})
    else:
        rows = [token_row(found, vocab, t) for t in range(found.d_vocab)]
        engine.write_rows(output, rows, metadata, key="tokens")
    return 0


def _print_coverage(document: dict, metadata: dict) -> None:
    from engine.data.tokens import display_token

    overall = document["overall"]
    print(
        f"# {metadata['model']} · projection {metadata['projection']} · "
        f"covered = best |dot|/|w| > null p99 = {document['null_p99']:.4f}"
    )
    print("layer\tcovered\tshare")
    for row in document["layers"]:
        print(f"{row['layer']}\t{row['covered']}\t{row['share']:.2%}")
    print(f"all\t{overall['covered']}\t{overall['share']:.2%} of {overall['tokens']} tokens")
    for title, key in (("best covered", "best"), ("least covered", "worst")):
        print(f"# {title}: token, best |dot|/|w| (x null p99), layer:unit")
        for row in document[key]:
            print(
                f"{display_token(row['token'])!s}\t{row['best_unit_dot']:.4f} (x{row['vs_null_p99']:.2f})"
                f"\t{_unit(row)}"
            )


def _unit(row: dict) -> str:
    """L29:1135, L12/E5/N301 when the best neuron is an expert's, or L29/F812 (its dictionary)."""
    if "best_feature" in row:
        return f"L{row['best_layer']}/F{row['best_feature']} ({row['best_dictionary']})"
    if "best_expert" not in row:
        return f"L{row['best_layer']}:{row['best_neuron']}"
    expert = row["best_expert"]
    label = "S" if expert == "shared" else f"E{expert}"
    return f"L{row['best_layer']}/{label}/N{row['best_neuron']}"


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    return coverage(engine, settings, layers, args.show, args.output)


COMMAND = Command(
    "coverage",
    "Does every token have a neuron aimed at it? A token is covered in a layer when some neuron's "
    "|dot| with it per unit norm beats the null baseline's 99th percentile (random directions' "
    "max over the vocabulary). Reports the covered share per layer and overall, and the best- "
    "and worst-covered tokens. .json writes that document; .csv/.jsonl write one row per token.",
    (
        count("show", "--show", 15, "best and worst tokens listed"),
        LAYERS,
        OUTPUT.helped(".json, .jsonl, .csv or - for a summary on stdout (default: -)"),
        TOP_K.helped(argparse.SUPPRESS),
        LENS,
    ),
    run,
)
