"""Command line: argument parsing shared by every command, and the headless commands.

``neuron-tui`` alone opens the explorer (in ``tui``); ``neuron-tui scan`` and friends run here and
never import Textual.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.device import check_device_name
from engine.errors import UserError
from engine.settings import DTYPES, Projection, ScanSettings

PROGRAM = "neuron-tui"
COMMANDS = ("scan", "layers", "tokens", "coverage")


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
    model.add_argument("--chunk-tokens", type=_positive_int, default=None, metavar="N", help=argparse.SUPPRESS)
    projection = parser.add_argument_group("projection (all off: the raw logit lens on weights)")
    projection.add_argument("--fold-final-norm", action="store_true", help="scale W_U's rows by the final norm's weight")
    projection.add_argument("--center-unembed", action="store_true", help="subtract each W_U row's mean over the vocabulary")
    projection.add_argument("--cosine", action="store_true", help="divide scores by |W_out[i]| and each W_U column's norm")
    cache = parser.add_argument_group("cache")
    cache.add_argument("--cache-dir", type=Path, default=None, metavar="DIR", help="cache directory (default: $NEURON_TUI_CACHE_DIR or ./.cache)")
    cache.add_argument("--no-cache", action="store_true", help="compute without reading or writing the cache")


def _add_layers_and_output(parser: argparse.ArgumentParser, output_help: str, top_k_help: str | None = None) -> None:
    """The options every headless command shares besides the model ones."""
    parser.add_argument("--layers", default="all", metavar="SPEC", help="13, 0-5, 0,3,7 or all (default: all)")
    parser.add_argument("--output", "-o", default="-", metavar="PATH", help=output_help)
    parser.add_argument("--top-k", type=_positive_int, default=10, metavar="K", help=top_k_help or argparse.SUPPRESS)
    add_common_options(parser)


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROGRAM,
        description="Explore MLP neurons whose output weights point at vocabulary tokens (W_out[i] @ W_U).",
        epilog="Headless commands: scan, layers, tokens, coverage ('neuron-tui scan --help' and so on). Without a command, the explorer opens.",
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
    _add_layers_and_output(
        parser,
        ".jsonl (one object per neuron), .json (settings + neurons), .csv (one row per neuron) or - for JSONL on stdout (default: -)",
        "tokens kept per neuron (default: 10)",
    )
    return parser


def build_layers_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=f"{PROGRAM} layers",
        description=(
            "One row per layer: max-dot quantiles (p50, p90, p99, max), kurtosis p50/p99, neurons whose "
            "max-dot per unit norm is more than 3 null standard deviations up, and prediction/suppression "
            "neuron counts (kurtosis > 10). Computes missing layers."
        ),
    )
    _add_layers_and_output(
        parser, ".jsonl, .json, .csv or - for a table on stdout (default: -)",
        "tokens kept per neuron (part of the cache key; default: 10)",
    )
    return parser


def build_tokens_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=f"{PROGRAM} tokens",
        description=(
            "For each TEXT, find the matching tokens (the exact string first, then variants with or "
            "without a leading space, other casings, Ġ/▁ read as a space) and print each token's N "
            "neurons with the largest |dot| over the requested layers, exact in float64, as JSONL "
            'records {"query", "token_id", "token", "exact", "layer", "neuron", "dot"}.'
        ),
    )
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="token text, e.g. ' the' or coming")
    parser.add_argument("--top", type=_positive_int, default=10, metavar="N", help="neurons per token (default: 10)")
    parser.add_argument("--exact-only", action="store_true", help="only the tokens whose text equals TEXT exactly")
    _add_layers_and_output(parser, ".jsonl, .json, .csv or - for JSONL on stdout (default: -)")
    return parser


def build_coverage_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=f"{PROGRAM} coverage",
        description=(
            "Does every token have a neuron aimed at it? A token is covered in a layer when some neuron's "
            "|dot| with it per unit norm beats the null baseline's 99th percentile (random directions' "
            "max over the vocabulary). Reports the covered share per layer and overall, and the best- "
            "and worst-covered tokens. .json writes that document; .csv/.jsonl write one row per token."
        ),
    )
    parser.add_argument("--show", type=_positive_int, default=15, metavar="N", help="best and worst tokens listed (default: 15)")
    _add_layers_and_output(parser, ".json, .jsonl, .csv or - for a summary on stdout (default: -)")
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
        chunk_tokens=args.chunk_tokens,
    )
    return NeuronEngine(options)


@contextmanager
def _engine_for(args: argparse.Namespace) -> Iterator:
    """The engine for a headless command: output path checked first, set-up warnings shown,
    the cache closed at the end. (Cache write failures are reported by the cache's logger.)"""
    from engine.export import check_output_path

    check_output_path(args.output)
    engine = engine_from_args(args)
    for warning in engine.warnings:
        print(warning, file=sys.stderr)
    try:
        yield engine
    finally:
        engine.close()


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
    from engine.export import export_settings, neuron_records, write_records
    from engine.layers import parse_layer_spec

    with _engine_for(args) as engine:
        info = engine.info
        layers = parse_layer_spec(args.layers, info.n_layers)
        vocab = engine.vocabulary
        with _StderrProgress(layers) as progress:
            null = engine.null_baseline()
            settings = export_settings(info, engine.settings, engine.device_label())

            def records():
                # One layer in memory at a time: its records are written before the next is scanned.
                for result in engine.layers(layers, listener=progress):
                    yield from neuron_records(info, vocab, result, engine.settings, null)

            count = write_records(args.output, records(), settings)
        if args.output != "-":
            print(f"wrote {count} neurons from {len(layers)} layer(s) to {args.output}", file=sys.stderr)
    return 0


def run_layers(argv: list[str]) -> int:
    args = build_layers_parser().parse_args(argv)
    from dataclasses import asdict

    from engine.export import export_settings, write_rows
    from engine.layers import parse_layer_spec
    from engine.summary import summarise

    with _engine_for(args) as engine:
        layers = parse_layer_spec(args.layers, engine.info.n_layers)
        with _StderrProgress(layers) as progress:
            results = list(engine.layers(layers, listener=progress))
            null = engine.null_baseline()
        rows = [asdict(summarise(result, null, engine.settings.projection.cosine)) for result in results]
        settings = export_settings(engine.info, engine.settings, engine.device_label())
        if args.output == "-":
            _print_layer_table(rows, settings)
        else:
            write_rows(args.output, rows, settings, key="layers")
    return 0


def _print_layer_table(rows: list[dict], settings: dict) -> None:
    columns = ["layer", "p50", "p90", "p99", "max", "kurtosis_p99", "n_standout", "n_prediction", "n_suppression"]
    print(f"# {settings['model']} · projection {settings['projection']}")
    print("\t".join(columns))
    for row in rows:
        print("\t".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))


def run_tokens(argv: list[str]) -> int:
    args = build_tokens_parser().parse_args(argv)
    from engine.export import export_settings, write_rows
    from engine.layers import parse_layer_spec
    from engine.token_search import TokenIndex

    with _engine_for(args) as engine:
        layers = parse_layer_spec(args.layers, engine.info.n_layers)
        index = TokenIndex(engine.vocabulary)
        queries = []
        for text in args.texts:
            matches = [m for m in index.find(text) if m.exact or not args.exact_only]
            if not matches:
                raise UserError(f"no token matches {text!r}: check the spelling (a leading space matters, e.g. ' the')")
            queries.append((text, matches))
        with _StderrProgress(layers) as progress:
            for _ in engine.layers(layers, listener=progress):
                pass  # fills the cache; the answer below is exact from the weights
        token_ids = sorted({m.token_id for _, matches in queries for m in matches})
        found = engine.exact_token_neurons(token_ids, layers, args.top)
        vocab = engine.vocabulary
        rows = [
            {"query": text, "token_id": m.token_id, "token": vocab.text(m.token_id), "exact": m.exact,
             "layer": hit.layer, "neuron": hit.neuron, "dot": hit.dot}
            for text, matches in queries for m in matches for hit in found[m.token_id]
        ]
        settings = export_settings(engine.info, engine.settings, engine.device_label())
        if args.output == "-":
            import json

            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            write_rows(args.output, rows, settings, key="tokens")
    return 0


def run_coverage(argv: list[str]) -> int:
    args = build_coverage_parser().parse_args(argv)
    from engine.coverage import compute_coverage
    from engine.export import export_settings, write_document, write_rows
    from engine.layers import parse_layer_spec

    with _engine_for(args) as engine:
        layers = parse_layer_spec(args.layers, engine.info.n_layers)
        with _StderrProgress(layers) as progress:
            results = list(engine.layers(layers, listener=progress))
            null = engine.null_baseline()
        coverage = compute_coverage(results, null)
        vocab = engine.vocabulary
        settings = export_settings(engine.info, engine.settings, engine.device_label())

        def token_row(token_id: int) -> dict:
            return {
                "token_id": int(token_id),
                "token": vocab.text(int(token_id)),
                "best_unit_dot": float(coverage.best_unit[token_id]),
                "vs_null_p99": float(coverage.best_unit[token_id] / coverage.threshold),
                "best_layer": int(coverage.best_layer[token_id]),
                "best_neuron": int(coverage.best_neuron[token_id]),
                "covered_layers": int(coverage.covered_layers[token_id]),
            }

        document = {
            "null_p99": coverage.threshold,
            "layers": [{"layer": layer, "covered": coverage.covered_per_layer[layer], "share": coverage.share(layer)} for layer in coverage.layers],
            "overall": {"covered": int(coverage.covered.sum()), "share": coverage.overall_share, "tokens": coverage.d_vocab},
            "best": [token_row(t) for t in coverage.ranked(args.show, best=True)],
            "worst": [token_row(t) for t in coverage.ranked(args.show, best=False)],
        }
        if args.output == "-":
            _print_coverage(document, settings)
        elif args.output.lower().endswith(".json"):
            write_document(args.output, {"settings": settings, **document})
        else:
            write_rows(args.output, [token_row(t) for t in range(coverage.d_vocab)], settings, key="tokens")
    return 0


def _print_coverage(document: dict, settings: dict) -> None:
    from engine.tokens import display_token

    overall = document["overall"]
    print(f"# {settings['model']} · projection {settings['projection']} · covered = best |dot|/|w| > null p99 = {document['null_p99']:.4f}")
    print("layer\tcovered\tshare")
    for row in document["layers"]:
        print(f"{row['layer']}\t{row['covered']}\t{row['share']:.2%}")
    print(f"all\t{overall['covered']}\t{overall['share']:.2%} of {overall['tokens']} tokens")
    for title, key in (("best covered", "best"), ("least covered", "worst")):
        print(f"# {title}: token, best |dot|/|w| (x null p99), layer:neuron")
        for row in document[key]:
            print(f"{display_token(row['token'])!s}\t{row['best_unit_dot']:.4f} (x{row['vs_null_p99']:.2f})\tL{row['best_layer']}:{row['best_neuron']}")


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
