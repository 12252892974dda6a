"""``neuron-tui dictionary compare``: a dictionary's features beside the neurons of the same layers."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import NEURONS, ActivationSettings, DictionaryFitSettings, ScanSettings
from tui.cli.commands.common import print_rows
from tui.cli.options import CORPUS, LAYERS, LENS, OUTPUT, TOP_K, Command, Option, count
from tui.cli.progress import say

_FIT = DictionaryFitSettings(layer=0)

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
    "like one token (their promoted or suppressed top tokens are mostly one word: it carries at "
    "least half the list's |dot|), the 99th "
    "percentile of max-dot per unit norm, the median |cosine| between a feature's direction and "
    "its nearest neuron's W_out row, and, where the default corpus's pass is cached, the "
    "reconstruction's explained variance and the share of dead features. Scans missing layers.",
    (LAYERS, OUTPUT.helped(".jsonl, .json, .csv or - for JSONL on stdout (default: -)"), TOP_K, LENS),
    run,
)


def fit(engine: NeuronEngine, corpus_spec: str | None, settings: DictionaryFitSettings) -> int:
    """Train a dictionary with sparsify's trainer, resuming a stopped fit; say where it is. Ctrl+C
    stops it after the step in progress, its state kept (a second Ctrl+C stops it at once)."""
    corpus = engine.corpus(corpus_spec)  # every check before torch is imported
    folder = engine.dictionary_fit_folder(corpus, settings)
    if engine.dictionary_fitted(folder):
        say(f"fitted already: {folder}")
    else:
        what = f"a {settings.kind} of layer {settings.layer} ({settings.site})"
        say(f"loading the model to fit {what} on {corpus.name}")
        stopped = _fit_until_stopped(engine, corpus, settings)
        if stopped is not None:
            say(f"stopped after step {stopped}, its state kept: run the same command to resume")
            return 130
        say(f"dictionary: {folder}")
    say(f"read it with --dictionary fitted (the newest fit of this model) or --dictionary {folder}")
    measure = f"neuron-tui activations --dictionary fitted --layers {settings.layer} --max-tokens 20000"
    say(f"its explained variance and dead features: {measure}")
    return 0


def _fit_until_stopped(engine: NeuronEngine, corpus, settings: DictionaryFitSettings) -> int | None:
    """The fit, with Ctrl+C asking it to stop between steps; the last step fitted if it stopped."""
    import signal
    import threading

    from engine.errors import ScanCancelled
    from tui.cli.progress import FitStderrProgress

    stop = threading.Event()
    progress = FitStderrProgress(unit="step", every_seconds=5.0)

    def interrupted(signum, frame) -> None:
        say("stopping after this step (Ctrl+C again stops at once)")
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        engine.fit_dictionary(corpus, settings, progress, stop.is_set)
    except ScanCancelled:
        return progress.done
    finally:
        signal.signal(signal.SIGINT, previous)
    return None


def run_fit(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    fit_settings = DictionaryFitSettings(
        layer=args.layer,
        kind=args.kind,
        site=args.site,
        latents=args.latents or 0,
        k=args.k,
        context=args.context,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
    )
    return fit(engine, args.corpus, fit_settings)


def _whole(text: str) -> int:
    from tui.cli.options import positive_int

    return 0 if text == "0" else positive_int(text)


FIT_COMMAND = Command(
    "dictionary fit",
    "Train a top-k sparse autoencoder or transcoder of one layer with EleutherAI sparsify's trainer, "
    "on the model's activations over a corpus; progress on stderr, and a stopped fit resumes where it "
    "stopped. The dictionary is kept with the user's data and read with --dictionary fitted.",
    (
        Option("layer", ("--layer",), None, dict(type=int, required=True, metavar="L", help="the layer")),
        Option(
            "kind",
            ("--kind",),
            None,
            dict(choices=("sae", "transcoder"), default=_FIT.kind, help="default: sae"),
        ),
        Option(
            "site",
            ("--site",),
            None,
            dict(
                choices=("resid", "mlp"),
                default=_FIT.site,
                help="resid: the residual stream after the block; mlp: the MLP's output (an SAE) or "
                "its input to its output (a transcoder) (default: mlp)",
            ),
        ),
        Option(
            "latents",
            ("--latents",),
            None,
            dict(type=_whole, default=0, metavar="N", help="features (default: 8 x d_model)"),
        ),
        count("k", "--k", _FIT.k, "features active per token"),
        count("context", "--context", _FIT.context, "tokens per training window"),
        count("max_tokens", "--max-tokens", _FIT.max_tokens, "corpus tokens to train on"),
        count("batch_size", "--batch-size", _FIT.batch_size, "windows per step"),
        Option("seed", ("--seed",), None, dict(type=int, default=0, metavar="S", help="default: 0")),
        Option(
            "lr",
            ("--lr",),
            None,
            dict(
                type=float,
                default=None,
                metavar="LR",
                help="Adam's learning rate (default: sparsify's, 2e-4 / sqrt(latents / 16384), made "
                "for millions of tokens; a short fit on a CPU learns more with a larger one)",
            ),
        ),
        CORPUS,
    ),
    run_fit,
    reads_dictionary=False,
    why_no_dictionary="fits a new dictionary on the model's activations",
)
