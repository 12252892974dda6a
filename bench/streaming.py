"""Streaming checkpoints against the bridge path, on random bf16 checkpoints made by the bench.

Each path runs in its own process (so peak RSS is its own): open the checkpoint, read W_U and the
final norm, then scan every layer (W_out read per layer), timing the first layer's result and the
whole scan. Shapes: Llama-3.2-1B (all 16 layers) and Llama-3.1-8B (4 of its 32 layers, full width
and vocabulary), sharded safetensors written by transformers.

    python -m bench.streaming [--device cuda] [--shapes 1b,8b] [--small]
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


def child(path: str, loader: str, device: str) -> None:
    """One path, in this process: prints a JSON line with its timings and peak RSS."""
    import torch

    from bench.child import peak_rss_kib
    from engine.projection import ProjectedUnembed
    from engine.scan import scan_layer
    from engine.settings import Projection

    started = time.perf_counter()
    folder = Path(path)
    if loader == "stream":
        from engine.sources.safetensors_source import SafetensorsSource

        source = SafetensorsSource(folder, "bench", folder.name)
    else:
        from engine.sources.bridge_source import BridgeSource

        source = BridgeSource(folder, "bench", folder.name)
    opened = time.perf_counter() - started
    target = torch.device(device)
    unembed = ProjectedUnembed(source.unembed(), source.final_norm(), Projection(), target, torch.float32)
    first = None
    for layer in range(source.info.n_layers):
        scan_layer(layer, source.mlp_out(layer), unembed, 10, 8)
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
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
        for loader in ("stream", "bridge"):
            done = subprocess.run(
                [sys.executable, "-m", "bench.streaming", "--child", str(folder), loader, args.device],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(
                    f"  {loader}: FAILED "
                    f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}"
                )
                continue
            figures[loader] = json.loads(done.stdout.strip().splitlines()[-1])
            f = figures[loader]
            print(
                f"  {loader:<6} open {f['open_s']:.1f} s · first layer {f['first_layer_s']:.1f} s · "
                f"all layers "
                f"{f['total_s']:.1f} s · peak RSS {f['peak_rss_kib'] / 1024:,.0f} MiB",
                flush=True,
            )
        if len(figures) == 2:
            s, b = figures["stream"], figures["bridge"]
            print(
                f"  stream / bridge: first layer {s['first_layer_s'] / b['first_layer_s']:.2f}x, all layers "
                f"{s['total_s'] / b['total_s']:.2f}x, peak RSS {s['peak_rss_kib'] / b['peak_rss_kib']:.2f}x; "
                f"float32 W_U + two W_out = {bound_mib:,.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
