"""What a command is (its name, description, options and what runs it) and the options that several
commands share, each declared once. An option only one command takes lives in that command's module.

This module and the command modules are the only ones that know about argparse; everything below
them takes plain values.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from engine.settings import DTYPES, LOADERS, ActivationSettings, ScanSettings

if TYPE_CHECKING:
    from engine.neuron_engine import NeuronEngine

PROGRAM = "neuron-tui"
DEFAULTS = ScanSettings()
_ACTIVATION = ActivationSettings()


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input in one line and exits 2 (its usage dump is noise here)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class Option:
    name: str  # where argparse puts its value
    flags: tuple[str, ...]
    group: str | None = None  # the --help section; None: the command's own options
    settings: dict = field(default_factory=dict)  # argparse keyword arguments
    help_now: Callable[[], str] | None = None  # a help text that depends on this machine

    def helped(self, text: str) -> Option:
        """The same option with a command's own help text (argparse.SUPPRESS hides it)."""
        return replace(self, settings={**self.settings, "help": text}, help_now=None)

    def add_to(self, target: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        settings = dict(self.settings)
        if self.flags[0].startswith("-"):
            settings["dest"] = self.name
        if self.help_now is not None:
            settings["help"] = self.help_now()
        target.add_argument(*self.flags, **settings)


def count(name: str, flag: str, default: int | None, text: str, note: str = "", metavar: str = "N") -> Option:
    """A whole number of at least 1; the help says its default (after ``note``)."""
    said = text if default is None else f"{text} ({note}default: {default})"
    return Option(name, (flag,), None, dict(type=positive_int, default=default, metavar=metavar, help=said))


MODEL, PROJECTION, CACHE = (
    "model and computation",
    "projection (all off: the raw logit lens on weights)",
    "cache",
)


def _cache_help() -> str:
    from engine.neuron_engine import default_cache_location

    path, why, variable = default_cache_location()
    return (
        f"cache directory; without it: ${variable}, else a source checkout's .cache/, else "
        f"$XDG_CACHE_HOME/neuron-tui or ~/.cache/neuron-tui (here: {path}, from {why})"
    )


def _flag(name: str, flag: str, group: str, text: str) -> Option:
    return Option(name, (flag,), group, dict(action="store_true", help=text))


# Every command takes these: where the model and the cache are, and what computes.
ENGINE_OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        ("--model",),
        MODEL,
        dict(
            metavar="M",
            help="a .gguf file, a Hugging Face model directory, or a model name in the local HF cache "
            "(default: the bundled SmolLM2-135M-Instruct GGUF, a Q4_1 quantisation whose numbers "
            "differ somewhat from the published checkpoint's)",
        ),
    ),
    Option(
        "device",
        ("--device",),
        MODEL,
        dict(default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)"),
    ),
    Option(
        "dtype",
        ("--dtype",),
        MODEL,
        dict(
            choices=("auto", *DTYPES),
            default="auto",
            help="precision of the big matrix product: float32, or bfloat16 (tensor cores; inputs that "
            "are not bf16 are split into up to three bf16 parts, which hold a float32 exactly); "
            "either way candidates are chosen with a rigorous error bound and every reported score "
            "is rescored in float64 (default: auto = bfloat16 on CUDA, float32 on a CPU)",
        ),
    ),
    Option(
        "loader",
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
    Option(
        "dictionary",
        ("--dictionary",),
        MODEL,
        dict(
            action="append",
            default=None,
            metavar="PATH",
            help="read a dictionary's features instead of the MLP neurons: a sparse autoencoder or "
            "transcoder folder as SAELens, sparsify or circuit-tracer wrote it, a Gemma Scope "
            "params.npz, or a folder of them (one per layer); repeat to add more",
        ),
    ),
    Option(
        "chunk_tokens",
        ("--chunk-tokens",),
        MODEL,
        dict(type=positive_int, default=None, metavar="N", help=argparse.SUPPRESS),
    ),
    _flag("fold_final_norm", "--fold-final-norm", PROJECTION, "scale W_U's rows by the final norm's weight"),
    _flag(
        "center_unembed", "--center-unembed", PROJECTION, "subtract each W_U row's mean over the vocabulary"
    ),
    _flag("cosine", "--cosine", PROJECTION, "divide scores by |W_out[i]| and each W_U column's norm"),
    Option(
        "cache_dir",
        ("--cache-dir",),
        CACHE,
        dict(type=Path, default=None, metavar="DIR"),
        help_now=_cache_help,
    ),
    _flag("no_cache", "--no-cache", CACHE, "compute without reading or writing the cache"),
)

# Taken by several commands.
LENS = Option(
    "lens",
    ("--lens",),
    PROJECTION,
    dict(
        default="logit",
        metavar="LENS",
        help="logit: read each neuron's write as it is (the logit lens on weights); jacobian: "
        "through the Jacobian lens fitted here by 'neuron-tui lens fit' (J_l w for a neuron of "
        "layer l); jacobian:PATH: through a TransformerLens lens file (default: logit)",
    ),
)
_KEY = "part of the cache key; "
TOP_K = count("top_k", "--top-k", DEFAULTS.top_k, "top tokens kept per neuron", _KEY, metavar="K")
LAYERS = Option(
    "layers",
    ("--layers",),
    None,
    dict(default="all", metavar="SPEC", help="13, 0-5, 0,3,7 or all (default: all)"),
)
OUTPUT = Option(
    "output",
    ("--output", "-o"),
    None,
    dict(default="-", metavar="PATH", help=".jsonl, .json, .csv or - for stdout (default: -)"),
)
AGAINST = Option(
    "against",
    ("--against",),
    None,
    dict(
        default=None,
        metavar="B",
        help="another checkpoint of the same architecture and shapes to compare with neuron by "
        "neuron: a .gguf file, a model directory or a model name in the local HF cache (a GGUF "
        "file and a Hugging Face copy of one model compare)",
    ),
)
CORPUS = Option(
    "corpus",
    ("--corpus",),
    None,
    dict(
        default=None,
        metavar="CORPUS",
        help="wikipedia-vital or python-docs (built in), a .txt file, a folder of .txt files, a .jsonl "
        'file with a "text" field per line, or hf:NAME[:SPLIT] from the local datasets cache (default: '
        "wikipedia-vital, the lead sections of Wikipedia's vital articles)",
    ),
)
# A text to read: attribute and probe.
TEXT_OPTIONS: tuple[Option, ...] = (
    Option("text", ("--text",), None, dict(default=None, metavar="T", help="the text")),
    Option(
        "text_file",
        ("--text-file",),
        None,
        dict(type=Path, default=None, metavar="F", help="a UTF-8 file holding the text"),
    ),
)
# The activation pass's settings (the explorer runs it too).
ACTIVATION_OPTIONS: tuple[Option, ...] = (
    count("context", "--context", _ACTIVATION.context, "tokens per window"),
    count("examples", "--examples", _ACTIVATION.examples, "top examples per neuron"),
    count(
        "lift_positions",
        "--lift-positions",
        _ACTIVATION.lift_positions,
        "top examples the lift is measured on",
    ),
    count("max_tokens", "--max-tokens", _ACTIVATION.max_tokens, "read at most N corpus tokens"),
    count(
        "batch_tokens",
        "--batch-tokens",
        _ACTIVATION.batch_tokens,
        "tokens per forward pass, whole windows",
        _KEY,
    ),
)

if TYPE_CHECKING:
    Run = Callable[[argparse.Namespace, NeuronEngine, ScanSettings, list[int]], int]


@dataclass(frozen=True)
class Command:
    name: str  # "" is the explorer; "lens fit" is the command fit of the group lens
    description: str
    options: tuple[Option, ...]  # besides ENGINE_OPTIONS, in the order --help lists them
    run: Run
    epilog: str | None = None
    takes_terminal: bool = False  # the explorer: set-up warnings are printed after it closes
    reads_dictionary: bool = True  # False: it reads the neurons only, and --dictionary is refused
    why_no_dictionary: str = "reads the model's neurons, not a dictionary's features"

    @property
    def prog(self) -> str:
        return f"{PROGRAM} {self.name}".strip()

    def takes(self, name: str) -> bool:
        return any(option.name == name for option in self.options)

    def parser(self) -> OneLineParser:
        parser = OneLineParser(prog=self.prog, description=self.description, epilog=self.epilog)
        groups: dict[str, argparse._ArgumentGroup] = {}
        for option in self.options + ENGINE_OPTIONS:
            target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
            if option.group is not None:
                target = groups.setdefault(option.group, parser.add_argument_group(option.group))
            option.add_to(target)
        parser.add_argument("--version", action="version", version=f"{PROGRAM} {_version()}")
        return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("neuron-tui")
    except metadata.PackageNotFoundError:
        return "(not installed)"
