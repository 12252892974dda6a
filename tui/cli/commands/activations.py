"""``neuron-tui activations``: the model run on a corpus, where each neuron fires hardest."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tui.cli.commands.common import rank_prefix, said_written, unit_word
from tui.cli.opening import activation_settings
from tui.cli.options import ACTIVATION_OPTIONS, CORPUS, DEFAULTS, LAYERS, LENS, OUTPUT, TOP_K, Command


def activations(
    engine: NeuronEngine,
    settings: ScanSettings,
    layers: list[int],
    corpus_spec: str | None,
    activation: ActivationSettings,
    output: str,
) -> int:
    """The activation pass (split across torchrun's ranks when there are several); rank 0 writes."""
    if output.lower().endswith(".csv"):
        raise UserError(f"activations write .jsonl or .json (each record nests its examples), not {output}")
    corpus = engine.corpus(corpus_spec)  # every corpus check before torch is even imported

    from engine.data.evidence_records import activation_records
    from tui.cli.progress import ActivationStderrProgress

    with engine.process_ranks() as ranks:
        listener = ActivationStderrProgress(rank_prefix(ranks))
        results = engine.corpus_pass(layers, corpus, activation, settings, ranks, listener)
    if results is None:
        return 0  # another rank writes
    info, vocab = engine.info, engine.vocabulary
    any_result = next(iter(results.values()))
    metadata = {
        **engine.export_metadata(settings),
        "corpus": corpus.name,
        "corpus_hash": corpus.content_hash,
        "documents": corpus.n_documents,
        "positions": any_result.n_positions,
        **asdict(activation),
    }

    dictionaries = engine.dictionary_infos(settings.units)

    def records():
        for layer in layers:
            named = dictionaries[layer].name if layer in dictionaries else None
            yield from activation_records(info.name, vocab, results[layer], info.experts(layer), named)

    said_written(engine.write_records(output, records(), metadata), layers, output, unit=unit_word(settings))
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    return activations(engine, settings, layers, args.corpus, activation_settings(args), args.output)


COMMAND = Command(
    "activations",
    "Run the model on a corpus and record, per neuron, where it fires hardest (top examples with "
    "context, the firing token in ⟦ ⟧), its density (share of positions > 0), and whether it fires "
    "right before one of the tokens its weights promote: hit_rate (among its top --lift-positions "
    "examples), base_rate (over the corpus), lift = hit_rate / base_rate, and the mean direct "
    "effect on those tokens' logits. Under torchrun, ranks split the windows and rank 0 writes.",
    (
        LAYERS,
        CORPUS,
        *ACTIVATION_OPTIONS,
        OUTPUT.helped(
            ".jsonl (one object per neuron), .json (settings + neurons) or - for JSONL on stdout (default: -)"
        ),
        TOP_K.helped(
            f"promoted tokens per neuron from the weight scan: the lift's targets (default: {DEFAULTS.top_k})"
        ),
        LENS,
    ),
    run,
    epilog="Several GPUs: torchrun --nproc-per-node N --no-python neuron-tui activations ... "
    "Progress goes to stderr. A killed pass resumes from its last checkpoint.",
)
