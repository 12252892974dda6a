"""`make bench`: every figure of the performance goals, as ratios measured in one run.

(a) the floor: the bare matrix products of the same shapes, dtype and device;
(b) the engine's scan of the same layers (statistics, candidates and float64 rescoring included);
(c) the seed's per-neuron loop on a sample of neurons, extrapolated to the same layers;
(d) the cold end-to-end scan of the bundled model (process start to exit, no cache) against reading
    the tensors it needs plus the matrix products;
(e) warm start: launch to the explorer's first full frame on a warm cache, against a bare Textual app;
(f) peak resident memory of the cold scan against the bytes of the tensors a scan needs;
(g), (h) peak resident memory of one layer's scan of an 8B-shaped bf16 checkpoint and of one
    layer's corpus pass of the bundled model in a fresh cache, each beside its bound (bench.memory);
(i) direct logit attribution of a 256-token text over every layer of the bundled model against one
    forward pass of the same text (bench.attribution);
(j) one layer of a Qwen3-30B-A3B-shaped model of experts: experts per second against the matrix
    product floor, peak resident memory against its bound (bench.experts);
(k) the MCP server's start on a warm cache to its first list_layers answer, against a bare SDK
    server (bench.mcp_start; goal under 2 s).
Then (a)-(c) again for a Llama-3.2-1B-shaped model with random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.child import ROOT, child_env, peak_kib, run_child


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeat: int = 1) -> float:
    """Best of ``repeat`` runs (after one warm-up), in seconds."""
    function()
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return best


def matmul_floor(
    w_outs: list[np.ndarray], unembed, device: torch.device, dtype: torch.dtype, chunk: int
) -> float:
    """The bare products W_U[:, block]^T @ W_out^T over the same blocks the scan uses, in ``dtype``
    (bf16: one product of bf16 operands, however many the scan's split needs)."""
    neurons = [torch.from_numpy(w).to(device, dtype).T.contiguous() for w in w_outs]
    tokens = unembed.operand.T if dtype == torch.float32 else unembed.split.parts[0]
    out = torch.empty((chunk, neurons[0].shape[1]), device=device, dtype=dtype)

    def run() -> None:
        for matrix in neurons:
            for start in range(0, tokens.shape[0], chunk):
                stop = min(start + chunk, tokens.shape[0])
                torch.matmul(tokens[start:stop], matrix, out=out[: stop - start])

    return timed(run, device)


def seed_loop_per_neuron(
    w_out: np.ndarray, unembed_matrix: torch.Tensor, vocab_texts: list[str], sample: int
) -> float:
    """The seed write-up's loop: one product, abs, top-5 and token strings per neuron, in Python."""
    weights = torch.from_numpy(w_out[:sample]).to(unembed_matrix.device, unembed_matrix.dtype)
    started = time.perf_counter()
    for i in range(sample):
        unembedded = torch.matmul(weights[i], unembed_matrix)
        values, ids = unembedded.abs().topk(5, largest=True)
        _ = [f"{values[0].item():.3f} {vocab_texts[int(j)]}" for j in ids]
    _sync(unembed_matrix.device)
    return (time.perf_counter() - started) / sample


def bench_layers(name: str, w_outs, unembed_np, vocab_texts, device, dtype, seed_sample: int) -> dict:
    from engine.scan import fused_block
    from engine.scan.block_pass import COMPILED, wanted
    from engine.scan.layer_scan import default_chunk_tokens, scan_layer
    from engine.scan.projection import ProjectedUnembed
    from engine.settings import Projection

    unembed = ProjectedUnembed(unembed_np, None, Projection(), device, dtype)
    chunk = default_chunk_tokens(w_outs[0].shape[0], device)
    scan_layer(0, w_outs[0][:64], unembed, 10, 8, chunk_tokens=chunk)  # compiles the sweeps (once)
    floor = matmul_floor(w_outs, unembed, device, dtype, chunk)
    block_shape = (chunk, w_outs[0].shape[0])
    compile_s = None
    if wanted(block_shape, device):  # compiled once per process and shape: timed apart
        started = time.perf_counter()
        COMPILED.get(block_shape, device)  # starts it (in the background under auto)
        COMPILED.wait()
        compiled = COMPILED.get(block_shape, device) is not None
        compile_s = time.perf_counter() - started if compiled else None

    products = []

    def scan_all(reference: bool = False) -> None:
        for layer, w_out in enumerate(w_outs):
            result = scan_layer(layer, w_out, unembed, 10, 8, chunk_tokens=chunk, eager=reference)
            products.append(result.products)

    scan = timed(scan_all, device)
    eager = None
    if device.type == "cpu" and fused_block.AVAILABLE:  # the reference pass, for before/after
        eager = timed(lambda: scan_all(reference=True), device)
    matrix = unembed.operand if dtype == torch.float32 else unembed.split.parts[0].T
    per_neuron = seed_loop_per_neuron(w_outs[0], matrix, vocab_texts, seed_sample)
    seed = per_neuron * w_outs[0].shape[0] * len(w_outs)
    d_mlp, d_model = w_outs[0].shape
    flop = 2.0 * d_mlp * d_model * unembed.d_vocab * len(w_outs)
    return {
        "model": name,
        "layers": len(w_outs),
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(device),
        "pass": "compiled"
        if compile_s is not None
        else ("numba sweeps" if device.type == "cpu" and fused_block.AVAILABLE else "eager"),
        "products": sorted(set(products)),
        "eager_s": eager,
        "eager_over_floor_throughput": None if eager is None else floor / eager,
        "compile_s": compile_s,
        "floor_s": floor,
        "scan_s": scan,
        "seed_s": seed,
        "floor_tflops": flop / floor / 1e12,
        "scan_over_floor_throughput": floor / scan,
        "speedup_vs_seed": seed / scan,
    }


def bench_end_to_end(device: torch.device) -> dict:
    """(d) cold scan of every layer, (e) warm start, (f) peak memory; bundled model."""
    from engine.scan.layer_scan import default_chunk_tokens
    from engine.scan.projection import ProjectedUnembed
    from engine.settings import Projection
    from engine.sources.resolve import locate_model, open_source

    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "cache"
        out = Path(folder) / "scan.jsonl"
        cold, stderr = run_child(
            [
                "-m",
                "bench.child",
                "scan",
                "--device",
                str(device.type),
                "--cache-dir",
                str(cache),
                "--output",
                str(out),
            ]
        )
        cold_peak_kib = peak_kib(stderr)
        # The runtime: an interpreter with torch and the engine imported, no weights.
        runtime = subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch, engine.scan.layer_scan, engine.sources.gguf_source; "
                "from bench.child import peak_rss_kib; print(peak_rss_kib())",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=child_env(),
            check=True,
        )
        runtime_kib = int(runtime.stdout.strip())

        # The floor: reading every tensor the scan and its records need (W_U, W_E, each layer's
        # W_out and input rows) and their bare products: W_out against W_U, each input row
        # matrix (gate and up on this SwiGLU model) against W_E.
        started = time.perf_counter()
        source = open_source(locate_model(None))
        unembed_np = source.unembed()
        embedding = source.embedding()
        w_outs = [source.mlp_out(layer) for layer in range(source.info.n_layers)]
        inputs = [source.mlp_in(layer) for layer in range(source.info.n_layers)]
        read = time.perf_counter() - started
        unembed = ProjectedUnembed(unembed_np, None, Projection(), device, torch.float32)
        chunk = default_chunk_tokens(w_outs[0].shape[0], device)
        products = matmul_floor(w_outs, unembed, device, torch.float32, chunk)
        input_rows = [rows for layer in inputs for rows in (layer.gate, layer.up) if rows is not None]
        by_embedding = ProjectedUnembed(embedding.T, None, Projection(), device, torch.float32)
        products += matmul_floor(input_rows, by_embedding, device, torch.float32, chunk)
        needed_bytes = unembed_np.nbytes + w_outs[0].nbytes

        _, warm_err = run_child(["-m", "bench.first_frame", "explorer", str(cache)])  # also writes bytecode
        run_child(["-m", "bench.first_frame", "bare"])
        warm = min(run_child(["-m", "bench.first_frame", "explorer", str(cache)])[0] for _ in range(5))
        bare = min(run_child(["-m", "bench.first_frame", "bare"])[0] for _ in range(5))
        details = [run_child(["-m", "bench.first_frame", "detail", str(cache)])[1] for _ in range(5)]
        detail_open = sorted(float(err.rsplit("detail_open_s=", 1)[1].split()[0]) for err in details)
    return {
        "cold_scan_s": cold,
        "read_s": read,
        "matmuls_s": products,
        "cold_over_floor_throughput": (read + products) / cold,
        "warm_start_s": warm,
        "bare_textual_s": bare,
        "warm_over_bare": warm / bare,
        "warm_start_imports_torch": "torch_imported=True" in warm_err,
        "detail_open_median_s": detail_open[len(detail_open) // 2],
        "detail_open_max_s": detail_open[-1],
        "detail_loads_model": any("model_loaded=True" in err for err in details),
        "peak_rss_mib": cold_peak_kib / 1024,
        "runtime_rss_mib": runtime_kib / 1024,
        "tensor_mib": needed_bytes / 2**20,
        "rss_over_tensors": (cold_peak_kib - runtime_kib) * 1024 / needed_bytes,
    }


def llama_shaped(layers: int, seed: int = 0):
    generator = np.random.default_rng(seed)
    d_model, d_mlp, vocab = 2048, 8192, 128256
    unembed = generator.standard_normal((d_model, vocab), dtype=np.float32) * 0.02
    w_outs = [generator.standard_normal((d_mlp, d_model), dtype=np.float32) * 0.02 for _ in range(layers)]
    return w_outs, unembed, [f"t{i}" for i in range(vocab)]


def report(results: dict, out) -> None:
    print(f"machine: {results['machine']}", file=out)
    if "memory" in results:
        from bench.memory import report_memory

        report_memory(results["memory"], out)
    if "attribution" in results:
        from bench.attribution import report_attribution

        report_attribution(results["attribution"], out)
    if "experts" in results:
        from bench.experts import report_experts

        report_experts(results["experts"], out)
    if "mcp_start" in results:
        from bench.mcp_start import report_mcp_start

        report_mcp_start(results["mcp_start"], out)
    for row in results["layers"]:
        compiled = "" if row["compile_s"] is None else f" (compiled in {row['compile_s']:.1f} s)"
        print(
            f"{row['model']:<28} {row['layers']:>2} layer(s) {row['dtype']:<8} {row['device']:<5} "
            f"{row['pass']}{compiled} "
            f"floor {row['floor_s']:.2f} s ({row['floor_tflops'] * 1000:.0f} GFLOP/s) · "
            f"scan {row['scan_s']:.2f} s "
            f"-> {row['scan_over_floor_throughput']:.2f}x floor throughput · seed loop {row['seed_s']:.1f} s "
            f"-> scan {row['speedup_vs_seed']:.1f}x faster",
            file=out,
        )
        print(f"{'':<28} products: {'; '.join(row['products'])}", file=out)
        if row["eager_s"] is not None:
            print(
                f"{'':<28} eager pass (the reference): scan {row['eager_s']:.2f} s -> "
                f"{row['eager_over_floor_throughput']:.2f}x floor throughput; sweeps "
                f"{row['eager_s'] / row['scan_s']:.2f}x faster",
                file=out,
            )
    e2e = results.get("end_to_end")
    if e2e:
        print(
            f"bundled model, cold scan of all layers (records with the input side): "
            f"{e2e['cold_scan_s']:.1f} s vs read {e2e['read_s']:.1f} s + matmuls "
            f"{e2e['matmuls_s']:.1f} s (W_out x W_U, gate and up x W_E) "
            f"-> {e2e['cold_over_floor_throughput']:.2f}x floor",
            file=out,
        )
        print(
            f"warm start to first frame: {e2e['warm_start_s']:.2f} s "
            f"vs bare Textual {e2e['bare_textual_s']:.2f} s -> "
            f"{e2e['warm_over_bare']:.2f}x (torch imported: {e2e['warm_start_imports_torch']})",
            file=out,
        )
        print(
            f"neuron detail to first frame, warm start: median {e2e['detail_open_median_s']:.2f} s, "
            f"slowest {e2e['detail_open_max_s']:.2f} s of 5 (model loaded: {e2e['detail_loads_model']})",
            file=out,
        )
        print(
            f"peak RSS of the cold scan: {e2e['peak_rss_mib']:.0f} MiB = "
            f"runtime {e2e['runtime_rss_mib']:.0f} MiB + "
            f"{e2e['rss_over_tensors']:.2f}x the {e2e['tensor_mib']:.0f} MiB of tensors a layer's scan needs",
            file=out,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16")
    parser.add_argument(
        "--bundled-layers", type=int, default=6, help="layers of the bundled model for (a)-(c)"
    )
    parser.add_argument(
        "--llama-layers", type=int, default=1, help="layers of the Llama-3.2-1B-shaped model (0 skips)"
    )
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument(
        "--skip-memory", action="store_true", help="skip (g) and (h) (about 10 minutes on a 2-core CPU)"
    )
    parser.add_argument("--skip-attribution", action="store_true", help="skip (i)")
    parser.add_argument(
        "--skip-experts", action="store_true", help="skip (j) (about 8 minutes on a 2-core CPU)"
    )
    parser.add_argument("--skip-mcp", action="store_true", help="skip (k)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from engine.runtime.device import resolve_device, torch_dtype
    from engine.sources.resolve import locate_model, open_source

    device = resolve_device(args.device)
    results: dict = {"machine": machine(), "layers": []}
    source = open_source(locate_model(None))
    picks = np.linspace(0, source.info.n_layers - 1, args.bundled_layers).round().astype(int).tolist()
    bundled = ([source.mlp_out(layer) for layer in picks], source.unembed(), source.vocabulary().texts)
    for dtype_name in args.dtypes.split(","):
        dtype = torch_dtype(dtype_name)
        results["layers"].append(
            bench_layers("SmolLM2-135M (bundled)", *bundled, device, dtype, seed_sample=128)
        )
        if args.llama_layers:
            results["layers"].append(
                bench_layers(
                    "Llama-3.2-1B-shaped (random)",
                    *llama_shaped(args.llama_layers),
                    device,
                    dtype,
                    seed_sample=16,
                )
            )
    if not args.skip_end_to_end:
        results["end_to_end"] = bench_end_to_end(device)
    if not args.skip_memory:
        from bench.memory import bench_memory

        results["memory"] = bench_memory(device.type)
    if not args.skip_attribution:
        from bench.attribution import bench_attribution

        results["attribution"] = bench_attribution(None, device.type)
    if not args.skip_experts:
        from bench.experts import bench_experts

        results["experts"] = bench_experts(device.type, 128)
    if not args.skip_mcp:
        from bench.mcp_start import bench_mcp_start

        results["mcp_start"] = bench_mcp_start()
    report(results, sys.stdout)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
