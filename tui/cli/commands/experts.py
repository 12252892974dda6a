"""``neuron-tui experts``: a model of experts, one record per expert of each layer."""

from __future__ import annotations

import argparse

import numpy as np

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.commands.common import print_rows
from tui.cli.options import LAYERS, LENS, OUTPUT, TOP_K, Command


def expert_records(
    engine: NeuronEngine, settings: ScanSettings, layers: list[int], explicit: bool
) -> list[dict]:
    """``explicit``: the layers were named (a dense one is refused), not all of them."""
    info, vocab = engine.info, engine.vocabulary
    if info.layer_experts is None:
        raise UserError(f"{info.name} has no experts: its MLPs are dense (scan reads them)")
    routed = [layer for layer in layers if info.experts(layer) is not None]
    dense = [layer for layer in layers if info.experts(layer) is None]
    if not routed:
        which = f"layer {dense[0]} has" if len(dense) == 1 else f"layers {_span(dense)} have"
        raise UserError(f"{which} no experts: dense MLPs (scan reads them)")
    if explicit and dense:
        engine.warn(f"note: left out dense layer(s) {_span(dense)} (scan reads them)")
    rows = []
    for layer in routed:
        experts = info.experts(layer)
        assert experts is not None
        routing = engine.routing(layer, settings.top_k)
        result = engine.layer(layer, settings)
        for group in experts.groups:
            max_dot = result.max_dot[group.start : group.stop]
            row = {
                "model": info.name,
                "layer": layer,
                "expert": group.expert,
                "neurons": group.size,
                "max_dot_p99": float(np.percentile(max_dot, 99)),
                "max_dot_max": float(max_dot.max()),
            }
            if group.expert != "shared":  # the shared expert is not routed: it runs everywhere
                e = int(group.expert)
                row["vocab_share"] = float(routing.chosen_share[e])
                row["router_top"] = [
                    {"token_id": int(t), "token": vocab.text(int(t)), "logit": float(v)}
                    for t, v in zip(routing.top_ids[e].tolist(), routing.top_logits[e].tolist())
                ]
            rows.append(row)
    return rows


def _span(layers: list[int]) -> str:
    return ", ".join(map(str, layers)) if len(layers) <= 6 else f"{layers[0]}-{layers[-1]} ({len(layers)})"


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    rows = expert_records(engine, settings, layers, explicit=args.layers != "all")
    if args.output == "-":
        print_rows(rows)
    else:
        engine.write_rows(args.output, rows, engine.export_metadata(settings), key="experts")
    return 0


COMMAND = Command(
    "experts",
    "A model of experts: one record per expert of each layer (model, layer, expert, neurons, "
    "max_dot_p99, max_dot_max; for a routed expert vocab_share, the share of the vocabulary the "
    "model's own router sends to it when a token's embedding is the MLP's input, and router_top, "
    "the tokens with the largest router logits). Scans missing layers.",
    (LAYERS, OUTPUT.helped(".jsonl, .json, .csv or - for JSONL on stdout (default: -)"), TOP_K, LENS),
    run,
    reads_dictionary=False,
)
