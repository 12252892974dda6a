"""One layer's pass (the detail's a) against the bare forward pass to that layer.

For each chosen layer: the bare pass is the Hugging Face model's forward over the same batches,
stopped by a hook right after that layer's MLP (no TransformerLens, no state); the layer's pass is
``NeuronEngine.corpus_pass([layer])`` on a fresh cache, landing its evidence every 2 s as the
explorer does. It is timed twice: cold, when no pass has read these windows before (its forward
runs on to the final norm for the scales the direct effect needs) and warm, when an earlier pass
kept those scales (its forward stops after the layer). Reported: time from the call to the first
landing with five examples of the neuron (model loaded), tokens/s against the bare pass, and the
process's peak RSS.

    python -m bench.layer_pass [--model M] [--tokens 8192] [--layers 5,15,29] [--neuron 1135]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.child import peak_rss_kib


class _Stop(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layer_pass")
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--layers", default="5,15,29")
    parser.add_argument("--neuron", type=int, default=1135)
    args = parser.parse_args()

    from engine.activations.corpus import default_corpus
    from engine.activations.forward_pass import batch_inputs
    from engine.activations.windows import tokenize_corpus
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ActivationSettings, ScanSettings

    layers = [int(part) for part in args.layers.split(",")]
    settings, scan = ActivationSettings(max_tokens=args.tokens), ScanSettings()
    corpus = default_corpus()
    loader = NeuronEngine(EngineOptions(model=args.model, device="cpu", use_cache=False))
    bridge, tokenizer, device = loader.activation_model()
    tokenized = tokenize_corpus(corpus, lambda t: tokenizer(t)["input_ids"], settings.context, args.tokens)
    batches = tokenized.batches(settings.windows_per_batch)
    model = bridge.original_model
    print(
        f"model {loader.location.display_name}, {int(bridge.cfg.n_layers)} layers, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{tokenized.n_positions} tokens in {len(batches)} batches"
    )

    def bare_to(layer: int) -> float:
        def stop(module, inputs, output):
            raise _Stop()

        handle = model.model.layers[layer].mlp.register_forward_hook(stop)
        begun = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                ids, _, _ = batch_inputs(tokenized, batch, device)
                try:
                    model(ids)
                except _Stop:
                    pass
        handle.remove()
        return time.perf_counter() - begun

    def layer_pass(engine: NeuronEngine, layer: int) -> tuple[float, float, int]:
        """(seconds to five examples of the neuron, seconds for the pass, batches that stopped early)."""
        begun, seen = time.perf_counter(), {}

        def landed(at, evidence, reading) -> None:
            if "first" not in seen and int((evidence.positive.doc[args.neuron] >= 0).sum()) >= 5:
                seen["first"] = time.perf_counter() - begun

        from engine.activations.job import ActivationJob

        job = ActivationJob(engine, [layer], corpus, settings, scan, on_landed=landed, land_seconds=2.0)
        job.run()
        return seen.get("first", float("nan")), time.perf_counter() - begun, job.batches_short

    for layer in layers:
        # The model loaded once: its load (about 20 s) is not timed.
        options = EngineOptions(
            model=args.model, device="cpu", cache_dir=Path(tempfile.mkdtemp(prefix="lp-"))
        )
        engine = NeuronEngine.beside(loader, options)
        engine.layer(layer, scan)  # the scan the lift reads, outside the timings
        bare_s = bare_to(layer)
        cold_first, cold_s, _ = layer_pass(engine, layer)
        # Warm: the evidence goes, the scales this pass kept stay; the forward stops after the layer.
        engine.forget_evidence(layer, corpus.content_hash, settings, scan)
        warm_first, warm_s, short = layer_pass(engine, layer)
        n = tokenized.n_positions
        print(
            f"L{layer}: bare forward to it {n / bare_s:,.0f} tokens/s; its pass cold {n / cold_s:,.0f} "
            f"tokens/s ({bare_s / cold_s:.2f}x), first 5 examples of N{args.neuron} after "
            f"{cold_first:.1f} s; "
            f"warm {n / warm_s:,.0f} tokens/s ({bare_s / warm_s:.2f}x, {short}/{len(batches)} batches "
            f"stopped after the layer), first 5 examples after {warm_first:.1f} s"
        )
    print(f"peak RSS {peak_rss_kib() / 1024:.0f} MiB (the model, one layer's state, one batch)")


if __name__ == "__main__":
    main()
