"""``neuron-tui dictionary compare``: a dictionary's features beside the neurons of the same layers."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import NEURONS, ActivationSettings, ScanSettings
from tui.cli.commands.common import print_rows
from tui.cli.options import LAYERS, LENS, OUTPUT, TOP_K, Command

GROUP = "Dictionaries (sparse autoencoders, transcoders) beside the neurons: compare them, or fit one."


def _evidence_facts(engine: NeuronEngine, settings: ScanSettings, layer: int) -> dict:
    """The default corpus's explained variance and dead share, where a pass over it is cached."""
    corpus_hash = engine.known_corpus_hash(engine.default_corpus_name())
    found = None
    if corpus_hash is not None:
        found = engine.best_evidence(layer, corpus_hash, ActivationSettings(), settings)
    if found is None:
        return {"explained_variance": None, "dead_share": None}
    evidence = found[0]
    return {"explained_variance": evidence.explained_variance, "dead_share": evidence.dead_share}


def compare_rows(engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> list[dict]:
    """Per layer: how many neurons and features stand out from random directions and how many look
    like one token, and how close each feature's nearest neuron is."""
    from engine.data.summary import count_one_token

    if not settings.units.is_dictionary:
        raise UserError("dictionary compare needs a dictionary: give one with --dictionary PATH")
    infos = engine.dictionary_infos(settings.units)
    neuron_settings = replace(settings, units=NEURONS)
    rows = []
    for layer in layers:
        neurons = engine.neurons(layer, neuron_settings)
        features = engine.neurons(layer, settings)
        nearest = np.abs(engine.neighbours(layer, settings.units, of_features=True).cosines[:, 0])
        row = {"layer": layer, "dictionary": infos[layer].name, "kind": infos[layer].kind}
        for name, units in (("neurons", neurons), ("features", features)):
            standout = 0 if units.null_z is None else int((units.null_z > 3.0).sum())
            one_token = count_one_token(units)
            row |= {
                name: units.d_mlp,
                f"{name}_standout": standout,
                f"{name}_one_token": one_token,
                f"{name}_one_token_share": one_token / units.d_mlp,
                f"{name}_max_dot_p99": float(np.quantile(units.per_unit, 0.99)),
            }
        row["nearest_neuron_cos_p50"] = float(np.median(nearest))
        row |= _evidence_facts(engine, settings, layer)
        rows.append(row)
    return rows


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    rows = compare_rows(engine, settings, layers)
    if args.output == "-":
        print_rows(rows)
    else:
        engine.write_rows(args.output, rows, engine.export_metadata(settings), key="layers")
    return 0


COMMAND = Command(
    "dictionary compare",
    "Per layer of the dictionaries given with --dictionary: its neurons and its features side by "
    "side: how many of each stand out from random directions (null z > 3), how many of those look "
    "like one token (their promoted or suppressed tokens spell at most two words), the 99th "
    "percentile of max-dot per unit norm, the median |cosine| between a feature's direction and "
    "its nearest neuron's W_out row, and, where the default corpus's pass is cached, the "
    "reconstruction's explained variance and the share of dead features. Scans missing layers.",
    (LAYERS, OUTPUT.helped(".jsonl, .json, .csv or - for JSONL on stdout (default: -)"), TOP_K, LENS),
    run,
)
