"""The explorer, as the command line opens it: the terminal's one command (no command word)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from engine.settings import ScanSettings
from tui.cli.opening import activation_settings, open_against
from tui.cli.options import ACTIVATION_OPTIONS, AGAINST, CORPUS, LENS, TOP_K, Command, Option

if TYPE_CHECKING:
    from engine.neuron_engine import NeuronEngine


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    from tui.launch import run_explorer

    if args.layer is not None:
        engine.check_layer(args.layer)  # before the terminal is taken over
    corpus = engine.corpus(args.corpus) if args.corpus else None  # a bad corpus: one line, before the screen
    against = open_against(engine, settings, args.against) if args.against else None
    try:
        return run_explorer(
            engine,
            settings,
            start_layer=args.layer,
            activation=activation_settings(args),
            corpus=corpus,
            against=against,
        )
    finally:
        if against is not None:
            against.close()


EXPLORER = Command(
    "",
    "Explore MLP neurons whose output weights point at vocabulary tokens (W_out[i] @ W_U).",
    (
        Option(
            "layer",
            ("--layer",),
            None,
            dict(type=int, default=None, metavar="N", help="layer to open first (default: the last)"),
        ),
        TOP_K,
        LENS,
        AGAINST,
        CORPUS,
        *ACTIVATION_OPTIONS,
    ),
    run,
    epilog="Headless commands: scan, layers, tokens, coverage, collection, activations, diff, lens fit "
    "('neuron-tui scan --help' and so on). Without a command, the explorer opens.",
    takes_terminal=True,
)
