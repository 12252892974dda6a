"""The activation pass against the bare forward pass of the same model on the same tokens.

Both run the same batches (the pass's own windows of the embedded corpus) on the same device and
dtype, alternating, best of ``--repeat``: the bare pass is the Hugging Face model's forward with no
hooks (it includes the unembedding, which the activation pass skips); the activation pass reads
every layer's MLP activations (and, for a gated MLP, its gate and up values) through
TransformerLens hooks and folds them into the per-neuron state: both poles and the four sign
cases; it is timed once more without the cases. Peak memory is the process's high-water mark
over the model, one batch and the state.

    python -m bench.activations [--model M] [--device cpu] [--tokens 8192] [--layers all]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.child import peak_rss_kib


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.activations")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from engine.activations.corpus import default_corpus
    from engine.activations.forward_pass import is_gated, run_batches
    from engine.activations.state import LayerActivationState
    from engine.activations.windows import tokenize_corpus
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.runtime.ranks import SINGLE
    from engine.settings import ActivationSettings

    engine = NeuronEngine(EngineOptions(model=args.model, device=args.device, use_cache=False))
    started = time.perf_counter()
    bridge, tokenizer, device = engine.activation_model(SINGLE)
    load_s = time.perf_counter() - started
    rss_model_kib = peak_rss_kib()
    settings = ActivationSettings(max_tokens=args.tokens)
    tokenized = tokenize_corpus(
        default_corpus(), lambda t: tokenizer(t)["input_ids"], settings.context, settings.max_tokens
    )
    batches = tokenized.batches(settings.windows_per_batch)
    numbers = list(range(len(batches)))
    layers = list(range(int(bridge.cfg.n_layers)))
    d_mlp = int(bridge.cfg.d_mlp)
    model = bridge.original_model

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bare() -> None:
        from engine.activations.forward_pass import batch_inputs

        with torch.inference_mode():
            for number in numbers:
                ids, _, _ = batch_inputs(tokenized, batches[number], device)
                model(ids)
        sync()

    gated = {layer: is_gated(bridge, layer) for layer in layers}

    def activation_pass(cases: bool) -> None:
        states = {
            layer: LayerActivationState(
                d_mlp, settings.keep, settings.examples, cases and gated[layer], device
            )
            for layer in layers
        }
        scales = np.zeros(tokenized.n_positions)
        predicted = np.zeros(tokenized.n_positions, dtype=np.int64)
        run_batches(bridge, tokenized, batches, numbers, states, scales, predicted, device)
        sync()

    timings: dict[str, list[float]] = {"bare": [], "pass": [], "poles": []}
    runs = (
        ("bare", bare),
        ("pass", lambda: activation_pass(True)),
        ("poles", lambda: activation_pass(False)),
    )
    for _ in range(args.repeat):
        for name, run in runs:
            begun = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - begun)
    bare_s, pass_s, poles_s = min(timings["bare"]), min(timings["pass"]), min(timings["poles"])
    tokens = tokenized.n_positions
    print(
        f"model {engine.location.display_name}, {len(layers)} layers, d_mlp {d_mlp}, device {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"load {load_s:.1f} s; {tokens} tokens in {len(batches)} batches of {settings.windows_per_batch} "
        f"windows x {settings.context}"
    )
    print(
        f"bare forward {bare_s:.2f} s ({tokens / bare_s:,.0f} tokens/s); activation pass over all layers "
        f"{pass_s:.2f} s ({tokens / pass_s:,.0f} tokens/s) -> {bare_s / pass_s:.2f}x of the bare pass"
    )
    if any(gated.values()):
        print(
            f"the same pass without the gate/up sign cases (both poles): {poles_s:.2f} s "
            f"-> {bare_s / poles_s:.2f}x of the bare pass; the cases cost {pass_s / poles_s - 1:+.1%}"
        )
    per_layer = 2 * d_mlp * settings.keep * 12 + d_mlp * 512 * 4 + 2 * d_mlp * 8
    per_layer += 4 * d_mlp * (settings.examples * 12 + 8) if any(gated.values()) else 0
    state_mib = len(layers) * per_layer / 2**20
    print(
        f"peak RSS {peak_rss_kib() / 1024:.0f} MiB; after loading the model {rss_model_kib / 1024:.0f} MiB; "
        f"per-neuron state {state_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
