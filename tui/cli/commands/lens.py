"""``neuron-tui lens fit``: a Jacobian lens fitted with TransformerLens and kept with the user's data."""

from __future__ import annotations

import argparse

from engine.neuron_engine import NeuronEngine
from engine.settings import FitSettings, ScanSettings
from tui.cli.commands.common import rank_prefix
from tui.cli.options import CORPUS, Command, Option, count, positive_int
from tui.cli.progress import say

_FIT = FitSettings()
GROUP = "Jacobian lenses: fitted here with TransformerLens, then read through by --lens jacobian."


def fit_lens(engine: NeuronEngine, corpus_spec: str | None, fit: FitSettings) -> int:
    """Fit a Jacobian lens (split across torchrun's ranks when there are several); rank 0 says where
    it is."""
    corpus = engine.corpus(corpus_spec)  # every check before torch is imported

    from tui.cli.progress import FitStderrProgress

    with engine.process_ranks() as ranks:
        prefix = rank_prefix(ranks)
        say(f"{prefix}loading the model to fit a Jacobian lens on {corpus.name}")
        path = engine.fit_lens(corpus, fit, ranks, FitStderrProgress(prefix))
    if path is None:
        return 0  # rank 0 writes
    lens = engine.open_lens(f"jacobian:{path}")
    lens_file = engine.lens_file(lens)
    assert lens_file is not None
    say(
        f"{lens_file.description}: {path}\n"
        f"read through it with --lens jacobian (the newest fit of this model) or --lens jacobian:{path}"
    )
    return 0


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    fit = FitSettings(prompts=args.prompts, max_seq_len=args.max_seq_len, dim_batch=args.dim_batch)
    return fit_lens(engine, args.corpus, fit)


COMMAND = Command(
    "lens fit",
    "Fit a Jacobian lens for the model with TransformerLens (J_l = E[d h_final / d h_l], one "
    "d_model x d_model matrix per layer) on the first N windows of the corpus, and keep it with "
    "your data (not the cache); --lens jacobian then reads every weight-side number through it. "
    "A prompt costs one forward and d_model/dim-batch backward passes: minutes on a CPU for the "
    "bundled model, seconds on a GPU.",
    (
        CORPUS,
        Option(
            "prompts",
            ("--prompts",),
            None,
            dict(
                type=positive_int,
                default=_FIT.prompts,
                metavar="N",
                help=f"prompts to fit on, windows of the corpus (default: {_FIT.prompts}; ~100 is what "
                "TransformerLens calls usable)",
            ),
        ),
        count("max_seq_len", "--max-seq-len", _FIT.max_seq_len, "tokens per prompt"),
        count(
            "dim_batch",
            "--dim-batch",
            _FIT.dim_batch,
            "output dimensions per backward pass: memory against speed, same lens",
        ),
    ),
    run,
    epilog="Progress goes to stderr; a killed fit resumes at its next prompt. Several GPUs: "
    "torchrun --nproc-per-node N --no-python neuron-tui lens fit ... (rank 0 merges and writes).",
    reads_dictionary=False,
)
