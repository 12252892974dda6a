"""Peak resident memory of the two one-layer commands with memory goals, each in a process of its own
(what a user runs, through the command line), beside its bound:

(g) ``neuron-tui scan --layers 0`` on an 8B-shaped bf16 checkpoint (4 layers, d_model 4096, d_mlp
    14336, a vocabulary of 128,256, ``LlamaForCausalLM``: the streamed path), in a fresh cache: the
    layer's scan, its input side, the null baseline and the concept numbers. The checkpoint (3.6 GiB)
    is written to a temporary folder and deleted afterwards; on a 2-core CPU the row takes about
    8 minutes.
(h) ``neuron-tui activations --layers 29 --max-tokens 8192`` on the bundled model in a fresh cache:
    the layer's scan first, then the pass.

    python -m bench.memory [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.child import peak_kib, run_child

# The goals of these rows. 8B: the tensors one layer's scan needs (W_E, gate, up, W_out, W_U), as
# the goal was set; the float32 sum of those tensors is printed beside it.
SCAN_8B_BOUND_MIB = 5928
LAYER_PASS_BOUND_MIB = 1536


def _layer_tensors_float32_mib(shape: dict) -> float:
    vocab, d_model, d_mlp = shape["vocab_size"], shape["hidden_size"], shape["intermediate_size"]
    return 4 * (2 * vocab * d_model + 3 * d_mlp * d_model) / 2**20


def _command_peak(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of ``neuron-tui ARGS`` in a process of its own."""
    seconds, stderr = run_child(["-m", "bench.child", *args])
    return seconds, peak_kib(stderr) / 1024


def bench_memory(device: str) -> dict:
    from bench.streaming import SHAPES

    shape = SHAPES["8b"]
    with tempfile.TemporaryDirectory(prefix="neuron-tui-bench-") as folder:
        root = Path(folder)
        pass_s, pass_mib = _command_peak(
            ["activations", "--layers", "29", "--max-tokens", "8192", "--device", device]
            + ["--cache-dir", str(root / "pass-cache"), "--output", str(root / "l29.jsonl")]
        )
        checkpoint = root / "llama-8b-shaped"
        written_s, _ = run_child(
            ["-c", f"from pathlib import Path; from bench.streaming import SHAPES, make_checkpoint; "
             f"Path({str(checkpoint)!r}).mkdir(); make_checkpoint(Path({str(checkpoint)!r}), SHAPES['8b'])"]
        )  # fmt: skip
        scan_s, scan_mib = _command_peak(
            ["scan", "--model", str(checkpoint), "--layers", "0", "--device", device]
            + ["--cache-dir", str(root / "scan-cache"), "--output", str(root / "l0.jsonl")]
        )
    return {
        "device": device,
        "scan_8b_peak_mib": scan_mib,
        "scan_8b_s": scan_s,
        "scan_8b_bound_mib": SCAN_8B_BOUND_MIB,
        "scan_8b_tensors_float32_mib": _layer_tensors_float32_mib(shape),
        "checkpoint_written_s": written_s,
        "layer_pass_peak_mib": pass_mib,
        "layer_pass_s": pass_s,
        "layer_pass_bound_mib": LAYER_PASS_BOUND_MIB,
    }


def report_memory(row: dict, out) -> None:
    print(
        f"one-layer scan, 8B-shaped bf16 (scan --layers 0, input side included, {row['device']}): "
        f"{row['scan_8b_peak_mib']:,.0f} MiB peak RSS (bound {row['scan_8b_bound_mib']:,} MiB; "
        f"the layer's tensors in float32 {row['scan_8b_tensors_float32_mib']:,.0f} MiB) in "
        f"{row['scan_8b_s']:.0f} s",
        file=out,
    )
    print(
        f"one-layer corpus pass, bundled model, fresh cache (activations --layers 29 --max-tokens "
        f"8192, {row['device']}): {row['layer_pass_peak_mib']:,.0f} MiB peak RSS "
        f"(bound {row['layer_pass_bound_mib']:,} MiB) in {row['layer_pass_s']:.0f} s",
        file=out,
    )


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    report_memory(bench_memory(args.device), sys.stdout)


if __name__ == "__main__":
    main()
