"""(j) One layer of a Qwen3-30B-A3B-shaped model of experts: experts per second against the matrix
product floor, and the scan's peak resident memory against its bound.

The checkpoint is one layer of Qwen3-30B-A3B's shape (128 experts of 768 neurons, d_model 2048, a
vocabulary of 151,936, bf16; per-expert tensors named as its files name them), with random
weights; it is written to a temporary folder (2.4 GiB) and deleted afterwards. In a process of its
own, the engine's expert-at-a-time scan runs over the first ``--experts`` experts of the layer
(all 128 by default: about 7 minutes on a 2-core CPU), and the floor is the bare float32
product of the projected unembedding with one expert's rows, timed in the same process.

The bound: what the scan must hold is W_U projected in float32 (as every scan holds it) and, while
it is widened, the stored bf16 W_U's mapped pages; one expert's rows in float32; the score
blocks; the layer's joined results (the per-neuron arrays of the experts scanned and each token's
running candidates, with the merge's temporaries); and the interpreter and libraries with the
checkpoint opened (measured: a process that opens the checkpoint's source and stops there). Not
the layer's 128 experts at once: those would add 128 x 768 x 2048 x 4 bytes = 768 MiB.

    python -m bench.experts [--device cpu] [--experts N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(
    hidden_size=2048, moe_intermediate_size=768, num_experts=128, vocab_size=151936, num_experts_per_tok=8
)
BLOCK_MIB = 64  # the scan's score blocks on a CPU and the histogram's scratch, generously


def write_checkpoint(folder: Path, seed: int = 0) -> float:
    """One Qwen3-MoE layer of the shape above in bf16, sharded with an index; GiB written."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast, Qwen3MoeConfig

    s = SHAPE
    config = Qwen3MoeConfig(
        hidden_size=s["hidden_size"],
        intermediate_size=6144,
        moe_intermediate_size=s["moe_intermediate_size"],
        num_experts=s["num_experts"],
        num_experts_per_tok=s["num_experts_per_tok"],
        num_hidden_layers=1,
        vocab_size=s["vocab_size"],
        num_attention_heads=32,
        num_key_value_heads=4,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    config.head_dim = 128
    config.architectures = ["Qwen3MoeForCausalLM"]
    config.save_pretrained(folder)
    generator = torch.Generator().manual_seed(seed)
    d, v, e, i = s["hidden_size"], s["vocab_size"], s["num_experts"], s["moe_intermediate_size"]

    def normal(*shape: int, std: float = 0.02) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * std).to(torch.bfloat16)

    shards = {
        "model-00001-of-00003.safetensors": {
            "model.embed_tokens.weight": normal(v, d),
            "model.norm.weight": (1 + normal(d, std=0.1).float()).to(torch.bfloat16),
        },
        "model-00002-of-00003.safetensors": {"lm_head.weight": normal(v, d)},
        "model-00003-of-00003.safetensors": {
            "model.layers.0.input_layernorm.weight": torch.ones(d, dtype=torch.bfloat16),
            "model.layers.0.post_attention_layernorm.weight": torch.ones(d, dtype=torch.bfloat16),
            "model.layers.0.mlp.gate.weight": normal(e, d),
        },
    }
    layer = shards["model-00003-of-00003.safetensors"]
    for expert in range(e):
        base = f"model.layers.0.mlp.experts.{expert}"
        layer[f"{base}.gate_proj.weight"] = normal(i, d)
        layer[f"{base}.up_proj.weight"] = normal(i, d)
        layer[f"{base}.down_proj.weight"] = normal(d, i)
    weight_map = {}
    for name, tensors in shards.items():
        save_file(tensors, folder / name, metadata={"format": "pt"})
        weight_map.update({tensor: name for tensor in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    vocab = {f"t{n}": n for n in range(v)}
    PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    ).save_pretrained(folder)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**30


def bound_mib(n_experts: int, settings, opened_mib: float) -> dict:
    """The memory bound of scanning ``n_experts`` experts of the layer, term by term (MiB);
    ``opened_mib``: the peak of a process that only opens the checkpoint."""
    from engine.data.score_histogram import BINS_PER_SIGN
    from engine.scan.layer_scan import TOKEN_MARGIN

    s, mib = SHAPE, 2**20
    neurons = n_experts * s["moe_intermediate_size"]
    keep = settings.token_top_n + TOKEN_MARGIN
    per_neuron = neurons * (3 * settings.top_k * 12 + 8 * 8 + 2 * BINS_PER_SIGN * 4)  # lists, stats, hist
    candidates = 5 * s["vocab_size"] * keep * 12  # running, the next expert's, merged, sort order
    terms = {
        "w_u_float32": s["vocab_size"] * s["hidden_size"] * 4 / mib,
        "w_u_stored_pages": s["vocab_size"] * s["hidden_size"] * 2 / mib,
        "one_expert_float32": s["moe_intermediate_size"] * s["hidden_size"] * 4 / mib,
        "score_blocks": BLOCK_MIB,
        "joined_results": (per_neuron + candidates) / mib,
        "opened": opened_mib,
    }
    terms["bound"] = sum(terms.values())
    return terms


def opened(path: str) -> None:
    """In this process: the checkpoint's source opened, nothing read; its peak on stderr."""
    from bench.child import peak_rss_kib
    from engine.sources.safetensors_source import SafetensorsSource

    source = SafetensorsSource(Path(path), "bench", "qwen3-30b-a3b-shaped")
    assert source.info.experts(0) is not None
    print(json.dumps({"peak_mib": peak_rss_kib() / 1024}), file=sys.stderr)


def child(path: str, device: str, n_experts: int) -> None:
    """In this process: the scan of the first ``n_experts`` experts and the floor; one JSON line."""
    import torch

    from bench.child import peak_rss_kib
    from engine.data.experts import LayerExperts
    from engine.scan.expert_layer import scan_experts
    from engine.scan.projection import project_unembed
    from engine.settings import ScanSettings
    from engine.sources.safetensors_source import SafetensorsSource

    settings = ScanSettings()
    source = SafetensorsSource(Path(path), "bench", "qwen3-30b-a3b-shaped")
    experts = source.info.experts(0)
    assert experts is not None
    chosen = LayerExperts.from_sizes([(g.expert, g.size) for g in experts.groups[:n_experts]])
    unembed = project_unembed(source.unembed(), source.final_norm(), settings, torch.device(device))
    rows = torch.from_numpy(source.expert_out(0, 0)).to(unembed.device)
    assert unembed.operand is not None, "a float32 scan has a float32 operand"
    tokens = unembed.operand.T  # [d_vocab, d_model] float32
    floor = float("inf")
    for _ in range(3):  # the bare product of one expert against the whole vocabulary
        started = time.perf_counter()
        tokens @ rows.T
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        floor = min(floor, time.perf_counter() - started)
    started = time.perf_counter()
    result = scan_experts(0, chosen, lambda e: source.expert_out(0, e), unembed, settings)
    seconds = time.perf_counter() - started
    assert result.d_mlp == chosen.width
    found = {"experts": n_experts, "scan_s": seconds, "floor_s_per_expert": floor}
    print(json.dumps({**found, "peak_mib": peak_rss_kib() / 1024}), file=sys.stderr)


def bench_experts(device: str, n_experts: int) -> dict:
    from bench.child import run_child
    from engine.settings import ScanSettings

    with tempfile.TemporaryDirectory(prefix="neuron-tui-bench-") as folder:
        root = Path(folder)
        started = time.perf_counter()
        size = write_checkpoint(root)
        written = time.perf_counter() - started
        _, stderr = run_child(["-m", "bench.experts", "--opened", str(root)])
        opened_mib = json.loads(stderr.strip().splitlines()[-1])["peak_mib"]
        scan = ["--child", str(root), "--device", device, "--experts", str(n_experts)]
        _, stderr = run_child(["-m", "bench.experts", *scan])
    found = json.loads(stderr.strip().splitlines()[-1])
    per_expert = found["scan_s"] / n_experts
    return {
        "device": device,
        "experts": n_experts,
        "checkpoint_gib": size,
        "written_s": written,
        "scan_s": found["scan_s"],
        "experts_per_s": 1 / per_expert,
        "floor_experts_per_s": 1 / found["floor_s_per_expert"],
        "peak_mib": found["peak_mib"],
        **{f"bound_{k}": v for k, v in bound_mib(n_experts, ScanSettings(), opened_mib).items()},
    }


def report_experts(row: dict, out=sys.stdout) -> None:
    print(
        f"one layer of a Qwen3-30B-A3B-shaped model ({row['experts']} of its 128 experts, {row['device']}): "
        f"{row['experts_per_s']:.3f} experts/s, the float32 product alone {row['floor_experts_per_s']:.3f}/s "
        f"({row['floor_experts_per_s'] / row['experts_per_s']:.2f}x); peak RSS {row['peak_mib']:,.0f} MiB "
        f"(bound {row['bound_bound']:,.0f} MiB: W_U {row['bound_w_u_float32']:,.0f} + its stored pages "
        f"{row['bound_w_u_stored_pages']:,.0f} + one expert {row['bound_one_expert_float32']:.0f} + blocks "
        f"{row['bound_score_blocks']:.0f} + joined results {row['bound_joined_results']:,.0f} + the opened "
        f"checkpoint {row['bound_opened']:,.0f})",
        file=out,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--experts", type=int, default=SHAPE["num_experts"])
    parser.add_argument("--child", metavar="CHECKPOINT")
    parser.add_argument("--opened", metavar="CHECKPOINT")
    args = parser.parse_args(argv)
    if args.opened:
        opened(args.opened)
        return
    if args.child:
        child(args.child, args.device, args.experts)
        return
    row = bench_experts(args.device, args.experts)
    report_experts(row)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
