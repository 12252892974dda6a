"""Command line: argument parsing shared by every command, and the headless commands.

``neuron-tui`` alone opens the explorer (in ``tui``); ``neuron-tui scan`` and friends run here and
never import Textual.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from engine.device import check_device_name
from engine.errors import UserError
from engine.settings import DTYPES, Projection, ScanSettings

PROGRAM = "neuron-tui"
COMMANDS = ("scan",)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input in one line and exits 2 (its usage dump is noise here)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _device(text: str) -> str:
    try:
        return check_device_name(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_common_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model and computation")
    model.add_argument("--model", metavar="M", help="a .gguf file, a Hugging Face model directory, or a model name in the local HF cache (default: the bundled SmolLM2-135M-Instruct GGUF)")
    model.add_argument("--device", type=_device, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")
    model.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype of the big matrix product; reported scores are rescored in float64 (default: float32)")
    model.add_argument("--loader", choices=("auto", "gguf", "bridge"), default="auto", help="auto: read GGUF tensors directly, load checkpoints through TransformerLens; bridge: load GGUF through transformers + TransformerBridge too")
    model.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N", help=argparse.SUPPRESS)
    projection = parser.add_argument_group("projection (all off: the raw logit lens on weights)")
    projection.add_argument("--fold-final-norm", action="store_true", help="scale W_U's rows by the final norm's weight")
    projection.add_argument("--center-unembed", action="store_true", help="subtract each W_U row's mean over the vocabulary")
    projection.add_argument("--cosine", action="store_true", help="divide scores by |W_out[i]| and each W_U column's norm")
    cache = parser.add_argument_group("cache")
    cache.add_argument("--cache-dir", type=Path, default=None, metavar="DIR", help="cache directory (default: $NEURON_TUI_CACHE_DIR or ./.cache)")
    cache.add_argument("--no-cache", action="store_true", help="compute without reading or writing the cache")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROGRAM,
        description="Explore MLP neurons whose output weights point at vocabulary tokens (W_out[i] @ W_U).",
        epilog="Commands: 'neuron-tui scan --help' for the headless scan. Without a command, the explorer opens.",
    )
    add_common_options(parser)
    parser.add_argument("--layer", type=int, default=None, metavar="N", help="layer to open first (default: the last)")
    parser.add_argument("--top-k", type=_positive_int, default=10, metavar="K", help="top tokens kept per neuron (default: 10)")
    return parser


def build_scan_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=f"{PROGRAM} scan",
        description=(
            "Compute (or read from the cache) every neuron's projection onto the vocabulary and write one "
            "record per neuron: model, layer, neuron, max_dot, top (tokens by |dot|, signed), promote, "
            "suppress, norm, mean, std, skew, kurtosis, class, null_z, null_pct."
        ),
        epilog="Progress goes to stderr. Bad input exits 2 with one line; Ctrl-C exits 130 and keeps the cache intact.",
    )
    parser.add_argument("--layers", default="all", metavar="SPEC", help="13, 0-5, 0,3,7 or all (default: all)")
    parser.add_argument("--top-k", type=_positive_int, default=10, metavar="K", help="tokens kept per neuron (default: 10)")
    parser.add_argument("--output", "-o", default="-", metavar="PATH", help=".jsonl (one object per neuron), .json (settings + neurons), .csv (one row per neuron) or - for JSONL on stdout (default: -)")
    add_common_options(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> ScanSettings:
    return ScanSettings(
        top_k=args.top_k,
        dtype=args.dtype,
        projection=Projection(args.fold_final_norm, args.center_unembed, args.cosine),
    )


def engine_from_args(args: argparse.Namespace):
    from engine.session import EngineOptions, NeuronEngine

    options = EngineOptions(
        model=args.model,
        device=args.device,
        loader=args.loader,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        settings=settings_from_args(args),
        chunk_rows=args.chunk_rows,
    )
    return NeuronEngine(options)


class _StderrProgress:
    """A rich progress bar on a terminal, a line per layer otherwise."""

    def __init__(self, layers: list[int]):
        self.layers = layers
        self.interactive = sys.stderr.isatty()
        self._bar = None
        self._task = None
        self._finished = 0
        self._started = time.perf_counter()

    def __enter__(self):
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("starting", total=len(self.layers))
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, event) -> None:
        if event.stage == "loading":
            self._say("loading model weights")
        elif event.stage == "scanning" and self._bar is not None:
            fraction = event.done / event.total if event.total else 0
            self._bar.update(self._task, completed=self._finished + fraction, description=f"layer {event.layer}")
        elif event.stage in ("done", "cached"):
            self._finished += 1
            how = "from cache" if event.stage == "cached" else f"computed in {event.seconds:.2f} s"
            if self._bar is not None:
                self._bar.update(self._task, completed=self._finished, description=f"layer {event.layer}")
            else:
                self._say(f"layer {event.layer}: {event.total} neurons {how} ({self._finished}/{len(self.layers)})")

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)


def run_scan(argv: list[str]) -> int:
    args = build_scan_parser().parse_args(argv)
    from engine.export import check_output_path, export_settings, neuron_records, write_records
    from engine.layers import parse_layer_spec

    check_output_path(args.output)
    engine = engine_from_args(args)
    for warning in engine.warnings:
        print(warning, file=sys.stderr)
    try:
        info = engine.info
        layers = parse_layer_spec(args.layers, info.n_layers)
        vocab = engine.vocabulary
        with _StderrProgress(layers) as progress:
            results = list(engine.layers(layers, listener=progress))
            null = engine.null_baseline()
        settings = export_settings(info, engine.settings, engine.device_label())

        def records():
            for result in results:
                yield from neuron_records(info, vocab, result, engine.settings, null)

        count = write_records(args.output, records(), settings)
        if args.output != "-":
            print(f"wrote {count} neurons from {len(layers)} layer(s) to {args.output}", file=sys.stderr)
        for warning in engine.cache.warnings if engine.cache else []:
            print(f"warning: {warning}", file=sys.stderr)
    finally:
        engine.close()
    return 0


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
