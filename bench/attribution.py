"""(i) Direct logit attribution of a 256-token text over every layer, against one forward pass of
the same text on the same model, device and dtype (goal: <= 3x).

The text is the default corpus's first 256 tokens, decoded (the count it tokenizes back to is
printed). The attribution is the engine's, through its door (``NeuronEngine.attribute``: every
layer, the top 10 each way per position; two forward passes and the float64 attributions); the
forward pass is the same bridge's forward to the logits, no hooks, and the Hugging Face model's own
forward beside it. Best of ``repeat`` each, alternating, after one warm-up of each.

    python -m bench.attribution [--model M] [--device cpu] [--tokens 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

TOP = 10  # neurons kept each way per position, as the explorer's "why this token" asks


def bench_text(tokenizer, tokens: int) -> tuple[str, int]:
    """The default corpus's first ``tokens`` tokens as text, and how many tokens it reads back as."""
    from engine.activations.corpus import default_corpus

    document = next(d for d in default_corpus().documents if len(d) > 8 * tokens)
    ids = list(tokenizer(document)["input_ids"])[:tokens]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return text, len(tokenizer(text)["input_ids"])


def bench_attribution(model: str | None, device: str, tokens: int = 256, repeat: int = 3) -> dict:
    from engine.neuron_engine import EngineOptions, NeuronEngine

    engine = NeuronEngine(EngineOptions(model=model, device=device, use_cache=False))
    bridge, tokenizer, on = engine.activation_model()
    text, count = bench_text(tokenizer, tokens)
    ids = torch.tensor([tokenizer(text)["input_ids"]], device=on)
    layers = list(range(engine.info.n_layers))

    def sync() -> None:
        if on.type == "cuda":
            torch.cuda.synchronize(on)

    def forward() -> None:
        with torch.inference_mode():
            bridge(ids)
        sync()

    def bare() -> None:
        with torch.inference_mode():
            bridge.original_model(ids)
        sync()

    def attribute() -> None:
        engine.attribute(text, layers, TOP)
        sync()

    runs = {"forward": forward, "bare": bare, "attribution": attribute}
    best = dict.fromkeys(runs, float("inf"))
    for run in runs.values():
        run()
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return {
        "model": engine.location.display_name,
        "device": str(on),
        "tokens": count,
        "layers": len(layers),
        "forward_s": best["forward"],
        "bare_forward_s": best["bare"],
        "attribution_s": best["attribution"],
        "over_forward": best["attribution"] / best["forward"],
        "over_bare_forward": best["attribution"] / best["bare"],
    }


def report_attribution(row: dict, out) -> None:
    print(
        f"attribution of a {row['tokens']}-token text, all {row['layers']} layers ({row['model']}, "
        f"{row['device']}): {row['attribution_s']:.3f} s vs one forward pass {row['forward_s']:.3f} s "
        f"-> {row['over_forward']:.2f}x (the bare Hugging Face forward {row['bare_forward_s']:.3f} s "
        f"-> {row['over_bare_forward']:.2f}x); goal <= 3x",
        file=out,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attribution", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report_attribution(bench_attribution(args.model, args.device, args.tokens, args.repeat), sys.stdout)


if __name__ == "__main__":
    main()
