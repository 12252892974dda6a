"""The GPU check, one prepared run (`make bench-gpu`): random weights made on the spot, nothing read.

1. exactness on CUDA: a Llama-3.2-1B-shaped layer scanned on the GPU against a float64 reference on
   the CPU, for a sample of neurons (top-k ids and values, statistics, score histograms);
2. throughput: all 16 layers of a Llama-3.2-1B-shaped model and 4 layers of a Llama-3.1-8B-shaped
   one (full width and vocabulary), scan against its bare matrix products: float32 with the eager
   and the compiled block pass (engine.scan.block_pass), and bfloat16;
3. a real CUDA out-of-memory error (a block far too large) and the halving retry;
4. the activation pass against the bare forward pass of a random Llama-3.2-1B-shaped model on the
   same tokens (needs transformer_lens; skipped with a note without it).

    python -m bench.gpu_check [--small]    # --small: tiny shapes, to try it on a CPU
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from bench.__main__ import bench_layers, machine

SHAPES = {
    "llama-3.2-1b": dict(d_model=2048, d_mlp=8192, vocab=128256, layers=16),
    "llama-3.1-8b": dict(d_model=4096, d_mlp=14336, vocab=128256, layers=4),
}
SMALL = {
    "llama-3.2-1b": dict(d_model=64, d_mlp=256, vocab=3000, layers=2),
    "llama-3.1-8b": dict(d_model=96, d_mlp=384, vocab=3000, layers=2),
}


def random_model(shape: dict, seed: int = 0):
    """Random weights stored as bf16 checkpoints store them (bf16 values, read into float32)."""
    generator = torch.Generator().manual_seed(seed)

    def weights(*size: int) -> np.ndarray:
        return (torch.randn(*size, generator=generator) * 0.02).bfloat16().float().numpy()

    unembed = weights(shape["d_model"], shape["vocab"])
    w_outs = [weights(shape["d_mlp"], shape["d_model"]) for _ in range(shape["layers"])]
    return w_outs, unembed


def check_exactness(device: torch.device, shape: dict, sample: int = 48) -> None:
    from engine.data.score_histogram import BINS_PER_SIGN
    from engine.scan.layer_scan import scan_layer
    from engine.scan.projection import ProjectedUnembed
    from engine.settings import Projection

    w_outs, unembed_np = random_model(dict(shape, layers=2), seed=1)
    cases = [
        (p, d) for p in (Projection(), Projection(True, True, True)) for d in (torch.float32, torch.bfloat16)
    ]
    for projection, dtype in cases:
        norm = np.random.default_rng(2).uniform(0.5, 2.0, shape["d_model"]).astype(np.float32)
        unembed = ProjectedUnembed(unembed_np, norm, projection, device, dtype)
        for layer, w_out in enumerate(w_outs):
            started = time.perf_counter()
            result = scan_layer(layer, w_out, unembed, 10, 8)
            seconds = time.perf_counter() - started
            rows = np.random.default_rng(layer).choice(w_out.shape[0], sample, replace=False)
            u = unembed_np.astype(np.float64)
            if projection.fold_final_norm:
                u = u * norm.astype(np.float64)[:, None]
            if projection.center_unembed:
                u = u - u.mean(axis=1, keepdims=True)
            w = w_out[rows].astype(np.float64)
            if projection.cosine:
                u = u / np.linalg.norm(u, axis=0, keepdims=True)
                w = w / np.linalg.norm(w, axis=1, keepdims=True)
            scores = w @ u
            order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
            ids_equal = (result.promote_ids[rows] == order).mean()
            value_error = (
                np.abs(result.promote_dots[rows] - np.take_along_axis(scores, order, 1)).max()
                / np.abs(scores).max()
            )
            low = np.argsort(scores, axis=1, kind="stable")[:, :10]
            low_equal = (result.suppress_ids[rows] == low).mean()
            centred = scores - scores.mean(axis=1, keepdims=True)
            m2 = (centred**2).mean(axis=1)
            kurtosis = (centred**4).mean(axis=1) / m2**2
            kurtosis_error = np.abs(result.kurtosis[rows] / kurtosis - 1).max()
            skew = (centred**3).mean(axis=1) / m2**1.5
            skew_error = np.abs(result.skew[rows] - skew).max()
            counts_ok = (result.score_hist[rows].sum(axis=1) == shape["vocab"]).all()
            print(
                f"  exactness, {projection.label}, {result.products}, layer {layer} on {device} "
                f"({seconds:.2f} s): promote ids "
                f"{ids_equal:.1%} equal, suppress ids {low_equal:.1%} equal, max relative value error "
                f"{value_error:.1e}, kurtosis {kurtosis_error:.1e} (relative), skew {skew_error:.1e} "
                f"(absolute), histogram counts sum to the vocabulary "
                f"{'yes' if counts_ok else 'NO'} ({2 * BINS_PER_SIGN} bins) [{sample} neurons vs float64]"
            )


def check_throughput(device: torch.device, shapes: dict) -> None:
    for name, shape in shapes.items():
        w_outs, unembed = random_model(shape)
        texts = [f"t{i}" for i in range(shape["vocab"])]
        for dtype, compile_mode in (
            (torch.float32, "off"),
            (torch.float32, "auto"),
            (torch.bfloat16, "auto"),
        ):
            os.environ["NEURON_TUI_COMPILE"] = compile_mode
            row = bench_layers(f"{name}-shaped", w_outs, unembed, texts, device, dtype, seed_sample=16)
            compiled = "" if row["compile_s"] is None else f" (compiled in {row['compile_s']:.1f} s)"
            print(
                f"  {row['model']:<20} {row['layers']:>2} layers {row['dtype']:<8} {row['pass']}{compiled} "
                f"floor {row['floor_s']:.3f} s "
                f"({row['floor_tflops']:.1f} TFLOP/s) · scan {row['scan_s']:.3f} s -> "
                f"{row['scan_s'] / row['floor_s']:.2f}x its floor ({row['scan_over_floor_throughput']:.2f}x "
                f"throughput) · seed loop {row['seed_s']:.1f} s -> {row['speedup_vs_seed']:.0f}x faster "
                f"· products {'; '.join(row['products'])}"
            )
        del w_outs, unembed
        if device.type == "cuda":
            torch.cuda.empty_cache()


def check_out_of_memory(device: torch.device, shape: dict) -> None:
    from engine.scan.layer_scan import scan_layer, scan_shrinking_on_oom
    from engine.scan.projection import ProjectedUnembed
    from engine.settings import Projection, ScanSettings

    w_outs, unembed_np = random_model(dict(shape, layers=1), seed=3)
    unembed = ProjectedUnembed(unembed_np, None, Projection(), device, torch.float32)
    shrunk: list[int] = []
    oversized = 1 << 21 if device.type == "cuda" else 1 << 12
    started = time.perf_counter()
    result = scan_shrinking_on_oom(0, w_outs[0], unembed, ScanSettings(), oversized, on_shrink=shrunk.append)
    seconds = time.perf_counter() - started
    normal = scan_layer(0, w_outs[0], unembed, 10, 8)
    same = np.array_equal(result.promote_ids, normal.promote_ids) and np.allclose(
        result.max_dot, normal.max_dot
    )
    print(
        f"  out of memory: blocks of {oversized} tokens x {shape['d_mlp']} neurons, halved to "
        f"{shrunk or 'no halving needed'} in {seconds:.1f} s; result equals the default blocks' {same}"
    )


def check_activation_pass(device: torch.device, shape: dict, tokens: int) -> None:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as error:
        print(f"  activation pass: skipped, transformer_lens is not importable ({error})")
        return
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from engine.activations.forward_pass import run_batches
    from engine.activations.state import LayerActivationState
    from engine.activations.windows import TokenizedCorpus

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["d_model"],
        intermediate_size=shape["d_mlp"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=max(shape["d_model"] // 64, 1),
        num_key_value_heads=max(shape["d_model"] // 256, 1),
        max_position_embeddings=512,
    )
    model = LlamaForCausalLM(config).to(device).eval()
    from tokenizers import Tokenizer, models

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(
            models.WordLevel({f"t{i}": i for i in range(shape["vocab"])}, unk_token="t0")
        )
    )
    bridge = TransformerBridge.boot_transformers(
        "meta-llama/Llama-3.2-1B", hf_model=model, tokenizer=tokenizer
    )
    context, per_batch = 256, 8
    ids = np.random.default_rng(0).integers(0, shape["vocab"], tokens)
    windows = [(start, min(start + context, tokens)) for start in range(0, tokens, context)]
    tokenized = TokenizedCorpus(
        token_ids=ids.astype(np.int64),
        doc=np.repeat(np.arange(len(windows)), context)[:tokens].astype(np.int32),
        position=np.tile(np.arange(context), len(windows))[:tokens].astype(np.int32),
        next_ids=np.append(ids[1:], -1),
        windows=windows,
    )
    batches = tokenized.batches(per_batch)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bare() -> None:
        from engine.activations.forward_pass import batch_inputs

        with torch.inference_mode():
            for batch in batches:
                model(batch_inputs(tokenized, batch, device)[0])
        sync()

    def activation_pass() -> None:
        # As the job keeps them: 100 positions per pole, 20 per gate/up sign case; SwiGLU (gated).
        states = {
            layer: LayerActivationState(shape["d_mlp"], 100, 20, True, device)
            for layer in range(shape["layers"])
        }
        every = list(range(len(batches)))
        predicted = np.zeros(tokens, dtype=np.int64)
        run_batches(bridge, tokenized, batches, every, states, np.zeros(tokens), predicted, device)
        sync()

    timings = {"bare": [], "pass": []}
    for _ in range(3):
        for name, run in (("bare", bare), ("pass", activation_pass)):
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    bare_s, pass_s = min(timings["bare"][1:]), min(timings["pass"][1:])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(
        f"  activation pass, {shape['layers']} layers x {shape['d_mlp']} neurons, {tokens} tokens, "
        f"float32: bare forward {bare_s:.3f} s ({tokens / bare_s:,.0f} tokens/s), pass {pass_s:.3f} s "
        f"({tokens / pass_s:,.0f} tokens/s) -> {bare_s / pass_s:.2f}x of the bare pass; peak GPU memory "
        f"{peak:.1f} GiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check")
    parser.add_argument("--small", action="store_true", help="tiny shapes (a dry run on a CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", default="1,2,3,4", help="which steps to run, e.g. 2")
    args = parser.parse_args()
    device = torch.device(args.device)
    shapes = SMALL if args.small else SHAPES
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    print(f"machine: {machine()}")
    started = time.perf_counter()
    steps = (
        ("1. exactness on the device", lambda: check_exactness(device, shapes["llama-3.2-1b"])),
        ("2. throughput against the matmul floor", lambda: check_throughput(device, shapes)),
        ("3. out of memory and the retry", lambda: check_out_of_memory(device, shapes["llama-3.1-8b"])),
        (
            "4. activation pass against the bare forward pass",
            lambda: check_activation_pass(device, shapes["llama-3.2-1b"], 2048 if args.small else 32768),
        ),
    )
    wanted = {int(number) for number in args.steps.split(",")}
    steps = tuple(step for number, step in enumerate(steps, 1) if number in wanted)
    for title, step in steps:
        print(title, flush=True)
        try:
            step()
        except Exception as error:  # report and go on: one failed step must not hide the others
            print(f"  FAILED: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        print(f"  ({time.perf_counter() - started:.0f} s so far)", flush=True)


if __name__ == "__main__":
    main()
