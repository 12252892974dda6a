"""``neuron-tui diff``: two checkpoints of one architecture family and shape, neuron by neuron."""

from __future__ import annotations

import argparse

from engine.data.diff import LayerDiff
from engine.data.experts import record_fields
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.commands.common import print_rows, said_written
from tui.cli.opening import open_against
from tui.cli.options import AGAINST, LAYERS, LENS, OUTPUT, TOP_K, Command
from tui.cli.progress import StderrProgress


def diff(engine: NeuronEngine, settings: ScanSettings, layers: list[int], against: str, output: str) -> int:
    """This model against another checkpoint of its shape, neuron by neuron: one record per neuron
    (JSONL on stdout for -), a summary line per layer on stderr."""
    other = open_against(engine, settings, against)  # both read through the same lens, this model's
    try:
        metadata = {
            **engine.export_metadata(settings),
            "against": other.info.name,
            "against_fingerprint": other.fingerprint,
        }
        rows: list[dict] = []
        with StderrProgress(layers) as progress:
            engine.null_baseline(settings)
            other.null_baseline(settings)
            for layer in layers:
                found = engine.diff(layer, other, settings, listener=progress)
                rows += _diff_rows(engine, other, settings, found)
                progress.say(_diff_line(found.summary()))
    finally:
        other.close()
    if output == "-":
        print_rows(rows, metadata)
        return 0
    said_written(engine.write_rows(output, rows, metadata, key="neurons"), layers, output)
    return 0


def _diff_line(summary: dict) -> str:
    return (
        f"layer {summary['layer']}: cos p50 {summary['cos_p50']:.4f} (min {summary['cos_min']:.4f}), "
        f"{summary['changed']} turned > 2.6°, top token kept {100 * summary['top_kept_share']:.1f}%, "
        f"promote Jaccard {summary['promote_jaccard_mean']:.3f}, "
        f"suppress {summary['suppress_jaccard_mean']:.3f}, "
        f"max-dot change p50 {summary['max_dot_change_p50']:+.4f}"
    )


def _diff_rows(
    engine: NeuronEngine, other: NeuronEngine, settings: ScanSettings, found: LayerDiff
) -> list[dict]:
    k = settings.top_k
    mine, theirs = engine.neurons(found.layer, settings), other.neurons(found.layer, settings)
    a, b = mine.result, theirs.result
    vocab, their_vocab = engine.vocabulary, other.vocabulary

    def texts(ids, of=vocab) -> list[str]:
        return [of.text(int(t)) for t in ids]

    rows = []
    for neuron in range(found.d_mlp):
        rows.append(
            {
                "model": engine.info.name,
                "against": other.info.name,
                "layer": found.layer,
                **record_fields(neuron, a.experts),  # and its expert, in a layer of experts
                "cos": _number(found.cosine[neuron]),
                "max_dot": float(a.max_dot[neuron]),
                "max_dot_against": float(b.max_dot[neuron]),
                "max_dot_change": float(found.max_dot_change[neuron]),
                "null_z": float(mine.null_z[neuron]) if mine.null_z is not None else None,
                "null_z_against": float(theirs.null_z[neuron]) if theirs.null_z is not None else None,
                "null_z_change": float(found.null_z_change[neuron]),
                "promote_jaccard": float(found.promote_jaccard[neuron]),
                "suppress_jaccard": float(found.suppress_jaccard[neuron]),
                "top_kept": bool(found.top_kept[neuron]),
                "top": vocab.text(int(a.top_ids[neuron, 0])),
                "top_dot": float(a.top_dots[neuron, 0]),
                "top_against": their_vocab.text(int(b.top_ids[neuron, 0])),
                "top_dot_against": float(b.top_dots[neuron, 0]),
                "promote": texts(a.promote_ids[neuron, :k]),
                "promote_against": texts(b.promote_ids[neuron, :k], their_vocab),
                "suppress": texts(a.suppress_ids[neuron, :k]),
                "suppress_against": texts(b.suppress_ids[neuron, :k], their_vocab),
            }
        )
    return rows


def _number(value: float) -> float | None:
    return None if value != value else float(value)


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    if not args.against:
        raise UserError("diff needs the other checkpoint: --against B (same architecture and shapes)")
    return diff(engine, settings, layers, args.against, args.output)


COMMAND = Command(
    "diff",
    "Compare two checkpoints of one architecture neuron by neuron (fine-tuning keeps the neuron "
    "basis): per neuron cos(W_out_A[i], W_out_B[i]), the change in max-dot and null-z (B - A), "
    "the Jaccard overlap of the top-k promote and suppress tokens and whether the strongest token "
    "is kept; a summary line per layer on stderr. Both models stream a layer at a time; results "
    "are cached per pair of weights.",
    (
        AGAINST,
        LAYERS,
        OUTPUT.helped(".jsonl, .json, .csv or - for JSONL on stdout (default: -)"),
        TOP_K,
        LENS,
    ),
    run,
    reads_dictionary=False,
)
