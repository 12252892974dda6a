"""The command line: every option and its default, the table of commands, and one opening.

This is the only module that knows about argparse. It turns arguments into plain values
(``EngineOptions``, ``ScanSettings``, layer lists, paths) and hands them to the explorer
(``tui.launch``) or a headless command (``tui.cli.headless``). Imports run command line -> tui ->
engine and never back; ``neuron-tui --help`` imports neither torch nor Textual.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

from engine.errors import UserError, describe
from engine.settings import DTYPES, LOADERS, ScanSettings

PROGRAM = "neuron-tui"
_DEFAULTS = ScanSettings()


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input in one line and exits 2 (its usage dump is noise here)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    group: str | None  # the --help section; None: the command's own options
    settings: dict = field(default_factory=dict)  # argparse keyword arguments


MODEL, PROJECTION, CACHE = (
    "model and computation",
    "projection (all off: the raw logit lens on weights)",
    "cache",
)

OPTIONS: dict[str, Option] = {
    "model": Option(
        ("--model",),
        MODEL,
        dict(
            metavar="M",
            help="a .gguf file, a Hugging Face model directory, or a model name in the local HF cache "
            "(default: the bundled SmolLM2-135M-Instruct GGUF, a Q4_1 quantisation whose numbers "
            "differ somewhat from the published checkpoint's)",
        ),
    ),
    "device": Option(
        ("--device",),
        MODEL,
        dict(default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)"),
    ),
    "dtype": Option(
        ("--dtype",),
        MODEL,
        dict(
            choices=("auto", *DTYPES),
            default="auto",
            help="precision of the big matrix product: float32, or bfloat16 (tensor cores; inputs that "
            "are not bf16 are split into two bf16 parts); either way candidates are chosen with a "
            "rigorous error bound and every reported score is rescored in float64 "
            "(default: auto = bfloat16 on CUDA, float32 on a CPU)",
        ),
    ),
    "loader": Option(
        ("--loader",),
        MODEL,
        dict(
            choices=LOADERS,
            default="auto",
            help="auto: read GGUF and safetensors tensors directly (checkpoints fall back to the bridge "
            "when TransformerLens cannot name their tensors); stream: checkpoints only that way; "
            "bridge: build the model through transformers + TransformerBridge",
        ),
    ),
    "chunk_tokens": Option(
        ("--chunk-tokens",),
        MODEL,
        dict(type=_positive_int, default=None, metavar="N", help=argparse.SUPPRESS),
    ),
    "lens": Option(
        ("--lens",),
        PROJECTION,
        dict(
            default="logit",
            metavar="LENS",
            help="logit: read each neuron's write as it is (the logit lens on weights); jacobian: "
            "through the Jacobian lens fitted here by 'neuron-tui lens fit' (J_l w for a neuron of "
            "layer l); jacobian:PATH: through a TransformerLens lens file (default: logit)",
        ),
    ),
    "prompts": Option(
        ("--prompts",),
        None,
        dict(
            type=_positive_int,
            default=32,
            metavar="N",
            help="prompts to fit on, windows of the corpus (default: 32; ~100 is what TransformerLens "
            "calls usable)",
        ),
    ),
    "max_seq_len": Option(
        ("--max-seq-len",),
        None,
        dict(type=_positive_int, default=128, metavar="N", help="tokens per prompt (default: 128)"),
    ),
    "dim_batch": Option(
        ("--dim-batch",),
        None,
        dict(
            type=_positive_int,
            default=32,
            metavar="N",
            help="output dimensions per backward pass: memory against speed, same lens (default: 32)",
        ),
    ),
    "against": Option(
        ("--against",),
        None,
        dict(
            default=None,
            metavar="B",
            help="another checkpoint of the same architecture and shapes to compare with neuron by "
            "neuron: a .gguf file, a model directory or a model name in the local HF cache",
        ),
    ),
    "fold_final_norm": Option(
        ("--fold-final-norm",),
        PROJECTION,
        dict(action="store_true", help="scale W_U's rows by the final norm's weight"),
    ),
    "center_unembed": Option(
        ("--center-unembed",),
        PROJECTION,
        dict(action="store_true", help="subtract each W_U row's mean over the vocabulary"),
    ),
    "cosine": Option(
        ("--cosine",),
        PROJECTION,
        dict(action="store_true", help="divide scores by |W_out[i]| and each W_U column's norm"),
    ),
    "cache_dir": Option(
        ("--cache-dir",),
        CACHE,
        dict(
            type=Path,
            default=None,
            metavar="DIR",
            help="cache directory (see below)",
        ),
    ),
    "no_cache": Option(
        ("--no-cache",), CACHE, dict(action="store_true", help="compute without reading or writing the cache")
    ),
    "top_k": Option(
        ("--top-k",),
        None,
        dict(
            type=_positive_int,
            default=_DEFAULTS.top_k,
            metavar="K",
            help=f"top tokens kept per neuron (part of the cache key; default: {_DEFAULTS.top_k})",
        ),
    ),
    "layer": Option(
        ("--layer",),
        None,
        dict(type=int, default=None, metavar="N", help="layer to open first (default: the last)"),
    ),
    "layers": Option(
        ("--layers",), None, dict(default="all", metavar="SPEC", help="13, 0-5, 0,3,7 or all (default: all)")
    ),
    "output": Option(
        ("--output", "-o"),
        None,
        dict(default="-", metavar="PATH", help=".jsonl, .json, .csv or - for stdout (default: -)"),
    ),
    "texts": Option(
        ("texts",), None, dict(nargs="+", metavar="TEXT", help="token text, e.g. ' the' or coming")
    ),
    "top": Option(
        ("--top",),
        None,
        dict(type=_positive_int, default=10, metavar="N", help="neurons per token (default: 10)"),
    ),
    "exact_only": Option(
        ("--exact-only",),
        None,
        dict(action="store_true", help="only the tokens whose text equals TEXT exactly"),
    ),
    "show": Option(
        ("--show",),
        None,
        dict(type=_positive_int, default=15, metavar="N", help="best and worst tokens listed (default: 15)"),
    ),
    "corpus": Option(
        ("--corpus",),
        None,
        dict(
            default=None,
            metavar="PATH",
            help='a .txt file, a folder of .txt files, a .jsonl file with a "text" field per line, or '
            "hf:NAME[:SPLIT] from the local datasets cache (default: the embedded Python documentation)",
        ),
    ),
    "context": Option(
        ("--context",),
        None,
        dict(type=_positive_int, default=256, metavar="N", help="tokens per window (default: 256)"),
    ),
    "examples": Option(
        ("--examples",),
        None,
        dict(type=_positive_int, default=20, metavar="N", help="top examples per neuron (default: 20)"),
    ),
    "lift_positions": Option(
        ("--lift-positions",),
        None,
        dict(
            type=_positive_int,
            default=100,
            metavar="N",
            help="top examples the lift is measured on (default: 100)",
        ),
    ),
    "max_tokens": Option(
        ("--max-tokens",),
        None,
        dict(type=_positive_int, default=None, metavar="N", help="read at most N corpus tokens"),
    ),
    "batch_tokens": Option(
        ("--batch-tokens",),
        None,
        dict(
            type=_positive_int,
            default=2048,
            metavar="N",
            help="tokens per forward pass, whole windows (part of the cache key; default: 2048)",
        ),
    ),
}
ENGINE_OPTIONS = (
    "model",
    "device",
    "dtype",
    "loader",
    "chunk_tokens",
    "fold_final_norm",
    "center_unembed",
    "cosine",
    "cache_dir",
    "no_cache",
)


@dataclass(frozen=True)
class Command:
    name: str  # "" is the explorer
    description: str
    options: tuple[str, ...]  # besides ENGINE_OPTIONS
    run: Callable[[argparse.Namespace, object, ScanSettings, list[int]], int]
    helps: dict[str, str] = field(default_factory=dict)  # per-command help text of shared options
    epilog: str | None = None
    takes_terminal: bool = False  # the explorer: set-up warnings are printed after it closes

    @property
    def prog(self) -> str:
        return f"{PROGRAM} {self.name}".strip()

    def parser(self) -> OneLineParser:
        parser = OneLineParser(prog=self.prog, description=self.description, epilog=self.epilog)
        groups: dict[str, argparse._ArgumentGroup] = {}
        for name in self.options + ENGINE_OPTIONS:
            option = OPTIONS[name]
            settings = (
                dict(option.settings, dest=name) if option.flags[0].startswith("-") else dict(option.settings)
            )
            if name in self.helps:
                settings["help"] = self.helps[name]
            if name == "cache_dir":
                settings["help"] = _cache_help()
            target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
            if option.group is not None:
                target = groups.setdefault(option.group, parser.add_argument_group(option.group))
            target.add_argument(*option.flags, **settings)
        parser.add_argument("--version", action="version", version=f"{PROGRAM} {_version()}")
        return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("neuron-tui")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _cache_help() -> str:
    from engine.neuron_engine import default_cache_location

    path, why, variable = default_cache_location()
    return (
        f"cache directory; without it: ${variable}, else a source checkout's .cache/, else "
        f"$XDG_CACHE_HOME/neuron-tui or ~/.cache/neuron-tui (here: {path}, from {why})"
    )


def _activation_settings(args):
    from engine.settings import ActivationSettings

    return ActivationSettings(
        context=args.context,
        examples=args.examples,
        lift_positions=args.lift_positions,
        max_tokens=args.max_tokens,
        batch_tokens=args.batch_tokens,
    )


def _run_explorer(args, engine, settings, layers) -> int:
    from tui.launch import run_explorer

    if args.layer is not None:
        engine.check_layer(args.layer)  # before the terminal is taken over
    corpus = engine.corpus(args.corpus) if args.corpus else None  # a bad corpus: one line, before the screen
    against = _against_engine(args, engine, settings) if args.against else None
    try:
        return run_explorer(
            engine,
            settings,
            start_layer=args.layer,
            activation=_activation_settings(args),
            corpus=corpus,
            against=against,
        )
    finally:
        if against is not None:
            against.close()


def _against_engine(args, engine, settings):
    """The other checkpoint's engine, checked against this one before the screen is taken."""
    from engine.neuron_engine import NeuronEngine

    other = NeuronEngine(replace(engine.options, model=args.against))
    try:
        engine.check_comparable(other)
        lens_file = engine.lens_file(settings.lens)
        if lens_file is not None:
            other.open_lens(f"jacobian:{lens_file.path}")
    except BaseException:
        other.close()
        raise
    return other


def _run_scan(args, engine, settings, layers) -> int:
    from tui.cli.headless import scan

    return scan(engine, settings, layers, args.output)


def _run_layers(args, engine, settings, layers) -> int:
    from tui.cli.headless import layer_table

    return layer_table(engine, settings, layers, args.output)


def _run_tokens(args, engine, settings, layers) -> int:
    from tui.cli.headless import tokens

    return tokens(engine, settings, layers, args.texts, args.top, args.exact_only, args.output)


def _run_coverage(args, engine, settings, layers) -> int:
    from tui.cli.headless import coverage

    return coverage(engine, settings, layers, args.show, args.output)


def _run_activations(args, engine, settings, layers) -> int:
    from tui.cli.headless import activations

    return activations(engine, settings, layers, args.corpus, _activation_settings(args), args.output)


def _run_lens_fit(args, engine, settings, layers) -> int:
    from tui.cli.headless import fit_lens

    return fit_lens(engine, args.corpus, args.prompts, args.max_seq_len, args.dim_batch)


def _run_diff(args, engine, settings, layers) -> int:
    from tui.cli.headless import diff

    if not args.against:
        raise UserError("diff needs the other checkpoint: --against B (same architecture and shapes)")
    return diff(engine, settings, layers, args.against, args.output)


def _run_collection(args, engine, settings, layers) -> int:
    from tui.cli.headless import collection

    return collection(engine, settings, args.output)


EXPLORER = Command(
    "",
    "Explore MLP neurons whose output weights point at vocabulary tokens (W_out[i] @ W_U).",
    (
        "layer",
        "top_k",
        "lens",
        "against",
        "corpus",
        "context",
        "examples",
        "lift_positions",
        "max_tokens",
        "batch_tokens",
    ),
    _run_explorer,
    epilog="Headless commands: scan, layers, tokens, coverage, collection, activations, diff, lens fit "
    "('neuron-tui scan --help' and so on). Without a command, the explorer opens.",
    takes_terminal=True,
)
COMMANDS: dict[str, Command] = {
    "scan": Command(
        "scan",
        "Compute (or read from the cache) every neuron's projection onto the vocabulary and write one "
        "record per neuron: model, layer, neuron, max_dot, top (tokens by |dot|, signed), promote, "
        "suppress, norm, mean, std, skew, kurtosis, class, null_z, null_pct.",
        ("layers", "output", "top_k", "lens"),
        _run_scan,
        helps={
            "output": ".jsonl (one object per neuron), .json (settings + neurons), .csv (one row per neuron) "
            "or - for JSONL on stdout (default: -)",
            "top_k": f"tokens kept per neuron (default: {_DEFAULTS.top_k})",
        },
        epilog="Progress goes to stderr. Bad input exits 2 with one line; "
        "Ctrl-C exits 130 and keeps the cache intact.",
    ),
    "layers": Command(
        "layers",
        "One row per layer: max-dot quantiles (p50, p90, p99, max), kurtosis p50/p99, neurons whose "
        "max-dot per unit norm is more than 3 null standard deviations up, and prediction/suppression "
        "neuron counts (kurtosis > 10). Computes missing layers.",
        ("layers", "output", "top_k", "lens"),
        _run_layers,
        helps={"output": ".jsonl, .json, .csv or - for a table on stdout (default: -)"},
    ),
    "tokens": Command(
        "tokens",
        "For each TEXT, find the matching tokens (the exact string first, then variants with or "
        "without a leading space, other casings, Ġ/▁ read as a space) and print each token's N "
        "neurons with the largest |dot| over the requested layers, exact in float64, as JSONL "
        'records {"query", "token_id", "token", "exact", "layer", "neuron", "dot"}.',
        ("texts", "top", "exact_only", "layers", "output", "top_k", "lens"),
        _run_tokens,
        helps={"top_k": argparse.SUPPRESS},
    ),
    "collection": Command(
        "collection",
        "Export the collection: every neuron marked in the explorer (space) for this model, across "
        "layers, with its note, statistics and top tokens (layers missing from the cache are computed).",
        ("output", "top_k", "lens"),
        _run_collection,
        helps={
            "output": ".jsonl, .json, .csv or - for JSONL on stdout (default: -)",
            "top_k": f"tokens per list in each record (default: {_DEFAULTS.top_k})",
        },
    ),
    "activations": Command(
        "activations",
        "Run the model on a corpus and record, per neuron, where it fires hardest (top examples with "
        "context, the firing token in ⟦ ⟧), its density (share of positions > 0), and whether it fires "
        "right before one of the tokens its weights promote: hit_rate (among its top --lift-positions "
        "examples), base_rate (over the corpus), lift = hit_rate / base_rate, and the mean direct "
        "effect on those tokens' logits. Under torchrun, ranks split the windows and rank 0 writes.",
        (
            "layers",
            "corpus",
            "context",
            "examples",
            "lift_positions",
            "max_tokens",
            "batch_tokens",
            "output",
            "top_k",
            "lens",
        ),
        _run_activations,
        helps={
            "output": ".jsonl (one object per neuron), .json (settings + neurons) or - for JSONL on stdout "
            "(default: -)",
            "top_k": "promoted tokens per neuron from the weight scan: the lift's targets "
            f"(default: {_DEFAULTS.top_k})",
        },
        epilog="Several GPUs: torchrun --nproc-per-node N --no-python neuron-tui activations ... "
        "Progress goes to stderr. A killed pass resumes from its last checkpoint.",
    ),
    "coverage": Command(
        "coverage",
        "Does every token have a neuron aimed at it? A token is covered in a layer when some neuron's "
        "|dot| with it per unit norm beats the null baseline's 99th percentile (random directions' "
        "max over the vocabulary). Reports the covered share per layer and overall, and the best- "
        "and worst-covered tokens. .json writes that document; .csv/.jsonl write one row per token.",
        ("show", "layers", "output", "top_k", "lens"),
        _run_coverage,
        helps={
            "output": ".json, .jsonl, .csv or - for a summary on stdout (default: -)",
            "top_k": argparse.SUPPRESS,
        },
    ),
    "diff": Command(
        "diff",
        "Compare two checkpoints of one architecture neuron by neuron (fine-tuning keeps the neuron "
        "basis): per neuron cos(W_out_A[i], W_out_B[i]), the change in max-dot and null-z (B - A), "
        "the Jaccard overlap of the top-k promote and suppress tokens and whether the strongest token "
        "is kept; a summary line per layer on stderr. Both models stream a layer at a time; results "
        "are cached per pair of weights.",
        ("against", "layers", "output", "top_k", "lens"),
        _run_diff,
        helps={"output": ".jsonl, .json, .csv or - for JSONL on stdout (default: -)"},
    ),
    "lens fit": Command(
        "lens fit",
        "Fit a Jacobian lens for the model with TransformerLens (J_l = E[d h_final / d h_l], one "
        "d_model x d_model matrix per layer) on the first N windows of the corpus, and keep it with "
        "your data (not the cache); --lens jacobian then reads every weight-side number through it. "
        "A prompt costs one forward and d_model/dim-batch backward passes: minutes on a CPU for the "
        "bundled model, seconds on a GPU.",
        ("corpus", "prompts", "max_seq_len", "dim_batch"),
        _run_lens_fit,
        epilog="Progress goes to stderr; a killed fit resumes at its next prompt. Several GPUs: "
        "torchrun --nproc-per-node N --no-python neuron-tui lens fit ... (rank 0 merges and writes).",
    ),
}


def engine_options(args: argparse.Namespace):
    from engine.neuron_engine import EngineOptions

    return EngineOptions(
        model=args.model,
        device=args.device,
        loader=args.loader,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        chunk_tokens=args.chunk_tokens,
    )


def scan_settings(args: argparse.Namespace) -> ScanSettings:
    from engine.neuron_engine import NeuronEngine
    from engine.settings import Projection

    projection = Projection(args.fold_final_norm, args.center_unembed, args.cosine)
    dtype = NeuronEngine.precision(args.device, args.dtype)
    return ScanSettings(top_k=getattr(args, "top_k", _DEFAULTS.top_k), dtype=dtype, projection=projection)


def with_prefix(text: str) -> str:
    return text if text.startswith("warning: ") else f"warning: {text}"


class WarningFormatter(logging.Formatter):
    """Each warning on one line, said once to be a warning."""

    def format(self, record: logging.LogRecord) -> str:
        return with_prefix(record.getMessage())


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:
        pass  # the terminal is gone (SSH dropped): nothing left to tell


@contextmanager
def opened_engine(command: Command, args: argparse.Namespace) -> Iterator:
    """The engine for a command: every cheap check first (output path, options), set-up warnings
    shown, the cache closed at the end."""
    from engine.data.layers import check_layer_spec
    from engine.neuron_engine import NeuronEngine, check_output_path

    if "output" in command.options:
        check_output_path(args.output)
    if "layers" in command.options:
        check_layer_spec(args.layers)
    settings = scan_settings(args)
    engine = NeuronEngine(engine_options(args))  # its warnings go to logging: stderr, at once
    try:
        if getattr(args, "lens", "logit") != "logit":  # the lens file read and checked: one line if bad
            settings = replace(settings, lens=engine.open_lens(args.lens))
        engine.check(settings)  # the model's header, the device, top-k: before any heavy work
    except BaseException:
        engine.close()
        raise
    try:
        yield engine, settings
    finally:
        engine.close()
        if command.takes_terminal:  # the explorer showed them on screen; they stay readable after it
            for warning in engine.warnings:
                _say(with_prefix(warning))


def _dispatch(argv: list[str]) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(WarningFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    command = COMMANDS.get(" ".join(argv[:2])) if len(argv) >= 2 else None
    if command is not None:
        argv = argv[2:]
    else:
        command = COMMANDS.get(argv[0]) if argv else None
        if command is not None:
            argv = argv[1:]
    if command is None and argv and argv[0] == "lens":
        raise UserError("'neuron-tui lens' takes one command: fit (see 'neuron-tui lens fit --help')")
    if command is None:
        command = EXPLORER
    args = command.parser().parse_args(argv)
    if command.takes_terminal and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(
            "the explorer needs a terminal on stdin and stdout; for scripts use 'neuron-tui scan' "
            "(or layers, tokens, coverage)"
        )
    with opened_engine(command, args) as (engine, settings):
        layers: list[int] = []
        if "layers" in command.options:
            from engine.data.layers import parse_layer_spec

            layers = parse_layer_spec(args.layers, engine.info.n_layers)
        return command.run(args, engine, settings, layers)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except UserError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; the cache keeps every layer finished so far", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as error:
        if os.environ.get("NEURON_TUI_DEBUG"):
            raise
        print(
            f"{PROGRAM}: internal error: {describe(error)}; "
            "rerun with NEURON_TUI_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 1
