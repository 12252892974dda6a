"""``neuron-tui attribute``: which neurons made the token at each position of a text (direct logit
attribution through the fixed final norm), and what ablating a neuron does to it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.options import LAYERS, OUTPUT, TEXT_OPTIONS, Command, Option, count
from tui.cli.progress import AttributionStderrProgress, say

DEFAULT_TOP = 10
_NEURON = re.compile(r"^\s*l?(\d+)\s*[/:]\s*n?(\d+)\s*$", re.IGNORECASE)


def read_text(text: str | None, text_file: Path | None) -> str:
    """The text to attribute, from --text or --text-file (UTF-8); one line when it cannot be read."""
    if (text is None) == (text_file is None):
        raise UserError("give the text with --text T or --text-file F (one of them)")
    if text_file is not None:
        try:
            text = text_file.read_bytes().decode("utf-8")
        except OSError as error:
            raise UserError(f"cannot read {text_file}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise UserError(f"{text_file} is not UTF-8 text (byte {error.start}): convert it first") from None
    if text is None or not text.strip():
        raise UserError("the text is empty: give some text with --text or --text-file")
    return text


def parse_ablate(specs: list[str]) -> list[tuple[int, int]]:
    """``--ablate L/N`` (also ``L29/N1135`` or ``29:1135``), each checked for its form."""
    found = []
    for spec in specs:
        match = _NEURON.match(spec)
        if match is None:
            raise UserError(f"--ablate {spec!r}: write a neuron as L/N, e.g. 29/1135 or L29/N1135")
        found.append((int(match[1]), int(match[2])))
    return found


def attribute(
    engine: NeuronEngine,
    layers: list[int],
    text: str,
    top: int,
    target: str | None,
    ablate: list[tuple[int, int]],
    batch_tokens: int,
    output: str,
) -> int:
    """Every check first (the neurons, then the text and the target once the tokenizer is loaded),
    then the attribution and each ablation; the records are written once all are computed."""
    if output.lower().endswith(".csv"):
        raise UserError(f"attribute writes .jsonl or .json (each record nests its neurons), not {output}")
    for layer, neuron in ablate:
        engine.check_neuron(layer, neuron)
    # Layers of experts are refused from the shapes, before the model is loaded.
    engine.refuse_experts(layers, "attribution")
    engine.refuse_experts([layer for layer, _ in ablate], "ablation")
    ids, _ = engine.attribution_inputs(text, target)
    say(f"attributing {len(ids)} tokens over {len(layers)} layer(s)")
    progress = AttributionStderrProgress()
    found = engine.attribute(text, layers, top, target, listener=progress)
    ablations = []
    for layer, neuron in ablate:
        say(f"ablating L{layer}/N{neuron} at each of {len(ids)} positions")
        ablations.append(engine.ablate(text, layer, neuron, target, batch_tokens, listener=progress))
    from engine.data.attribution_records import attribution_records

    metadata = {
        "model": engine.info.name,
        "fingerprint": engine.fingerprint,
        "layers": layers,
        "top": top,
        "target": target,
        "positions": found.n_positions,
    }
    written = engine.write_records(output, attribution_records(engine.vocabulary, found, ablations), metadata)
    if output != "-":
        say(f"wrote {written} positions to {output}")
    return 0


_PROJECTION_FLAGS = ("fold_final_norm", "center_unembed", "cosine")


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    given = [name for name in _PROJECTION_FLAGS if getattr(args, name, False)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(
            f"attribute takes no {flags}: it reads the logit the model computes, through its own "
            "final norm and unembedding; leave the flag out"
        )
    text = read_text(args.text, args.text_file)
    ablate = parse_ablate(args.ablate)
    return attribute(engine, layers, text, args.top, args.target, ablate, args.batch_tokens, args.output)


COMMAND = Command(
    "attribute",
    "Which neurons made the token at each position of a text: per position the predicted token "
    "(or --target), its logit, and the --top neurons whose direct logit attribution to it is "
    "largest and most negative, a(p) * (W_out[i] . (g * W_U[:, t])) / rms(p) with the final norm's "
    "scale rms(p) held fixed; with --ablate, the change of that logit when the neuron alone is set "
    "to 0 at the position and the rest of the model recomputed, beside its direct part.",
    (
        *TEXT_OPTIONS,
        count("top", "--top", DEFAULT_TOP, "neurons listed per position, each way", metavar="K"),
        Option(
            "ablate",
            ("--ablate",),
            None,
            dict(
                action="append",
                default=[],
                metavar="L/N",
                help="a neuron to ablate at each position in turn (repeat for several, each alone); "
                "costs about positions^2 / 2 tokens of forward passes per neuron",
            ),
        ),
        Option(
            "target",
            ("--target",),
            None,
            dict(
                default=None,
                metavar="TOKEN",
                help="attribute this token's logit at every position (one token, e.g. ' Paris') "
                "instead of the predicted token's",
            ),
        ),
        count("batch_tokens", "--batch-tokens", 2048, "tokens per forward pass of the ablation"),
        LAYERS,
        OUTPUT.helped(".jsonl (one object per position), .json or - for JSONL on stdout (default: -)"),
    ),
    run,
    epilog="Positions count from 0, as the model's tokenizer splits the text by default.",
    reads_dictionary=False,
)
