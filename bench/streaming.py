"""Streaming checkpoints against the bridge path, on random bf16 checkpoints made by the bench.

Each path runs in its own process (so peak RSS is its own): open the checkpoint, read W_U and the
final norm, then scan every layer (W_out read per layer, the next one read ahead), timing the first
layer's result and the whole scan. Streaming runs twice: first with an empty cache (TransformerLens
is imported to name the tensors), then with the names cached, as every later scan of the checkpoint
finds them. Shapes: Llama-3.2-1B (all 16 layers) and Llama-3.1-8B (4 of its 32 layers, full width
and vocabulary), sharded safetensors written by transformers.

    python -m bench.streaming [--device cuda] [--shapes 1b,8b] [--scan-layers N]

``--scan-layers N`` scans only the first N layers and reads the rest (on a 2-core CPU a 1B-shaped
layer takes a minute to scan: ``--scan-layers 0`` compares the loading paths alone).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    "1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, vocab_size=128256, heads=32, kv=8
    ),
    "8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=4, vocab_size=128256, heads=32, kv=8
    ),
    "small": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, vocab_size=3000, heads=4, kv=2),
}


def make_checkpoint(folder: Path, shape: dict) -> float:
    """A random Llama checkpoint in bf16, sharded; returns its size in GiB."""
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        vocab_size=shape["vocab_size"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv"],
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="2GB")
    vocab = {f"t{i}": i for i in range(shape["vocab_size"])}
    PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    ).save_pretrained(folder)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**30


def child(path: str, loader: str, device: str, scan_layers: str, cache_dir: str) -> None:
    """One path, in this process: prints a JSON line with its timings and peak RSS."""
    import torch

    from bench.child import peak_rss_kib
    from engine.runtime.resources import return_freed_memory
    from engine.scan.layer_scan import scan_layer
    from engine.scan.projection import ProjectedUnembed
    from engine.settings import Projection

    started = time.perf_counter()
    folder = Path(path)
    if loader == "stream":
        from engine.sources.prefetch import PrefetchingSource
        from engine.sources.safetensors_source import SafetensorsSource
        from engine.store.cache import ResultCache
        from engine.store.products import TENSOR_NAMES, ProductStore

        names = ProductStore(ResultCache(Path(cache_dir)), "bench").bound(TENSOR_NAMES)
        source = PrefetchingSource(SafetensorsSource(folder, "bench", folder.name, names))
    else:
        from engine.sources.bridge_source import BridgeSource

        source = BridgeSource(folder, "bench", folder.name)
    opened = time.perf_counter() - started
    target = torch.device(device)
    unembed = ProjectedUnembed(source.unembed(), source.final_norm(), Projection(), target, torch.float32)
    first = None
    for layer in range(source.info.n_layers):
        w_out = source.mlp_out(layer)
        if layer < int(scan_layers):
            scan_layer(layer, w_out, unembed, 10, 8)
        del w_out
        return_freed_memory()
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    if hasattr(source, "close"):
        source.close()
    print(
        json.dumps(
            {"open_s": opened, "first_layer_s": first, "total_s": total, "peak_rss_kib": peak_rss_kib()}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="1b,8b")
    parser.add_argument(
        "--keep", type=Path, default=None, help="write the checkpoints here (default: a temp dir)"
    )
    parser.add_argument("--scan-layers", type=int, default=None, help="scan only the first N layers")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="neuron-tui-bench-"))
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        folder = root / f"llama-{name}-shaped"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        size = make_checkpoint(folder, shape)
        print(
            f"{name}: {shape['num_hidden_layers']} layers, d {shape['hidden_size']}, d_mlp "
            f"{shape['intermediate_size']}, vocab {shape['vocab_size']}: {size:.1f} GiB of bf16 safetensors "
            f"written in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        f32 = 4 * shape["hidden_size"]
        bound_mib = (shape["vocab_size"] * f32 + 2 * shape["intermediate_size"] * f32) / 2**20
        figures = {}
        # An empty cache: the first streaming run asks TransformerLens, the second finds the names.
        names = Path(tempfile.mkdtemp(prefix="neuron-tui-names-"))
        for run, loader in (("stream", "stream"), ("stream+names", "stream"), ("bridge", "bridge")):
            done = subprocess.run(
                [sys.executable, "-m", "bench.streaming", "--child", str(folder), loader, args.device]
                + [str(args.scan_layers if args.scan_layers is not None else 1 << 30), str(names)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
                print(f"  {run}: FAILED {last}")
                continue
            figures[run] = f = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"  {run:<12} open {f['open_s']:.1f} s · first layer {f['first_layer_s']:.1f} s · "
                f"all layers {f['total_s']:.1f} s · peak RSS {f['peak_rss_kib'] / 1024:,.0f} MiB",
                flush=True,
            )
        for run in ("stream", "stream+names"):
            if run in figures and "bridge" in figures:
                s, b = figures[run], figures["bridge"]
                print(
                    f"  {run} / bridge: first layer {s['first_layer_s'] / b['first_layer_s']:.2f}x, "
                    f"all layers {s['total_s'] / b['total_s']:.2f}x, "
                    f"peak RSS {s['peak_rss_kib'] / b['peak_rss_kib']:.2f}x",
                    flush=True,
                )
        print(f"  float32 W_U + two W_out = {bound_mib:,.0f} MiB", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:7])
    else:
        main()
