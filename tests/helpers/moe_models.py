"""Tiny random mixture-of-experts checkpoints written by transformers itself, and their experts'
W_out rows read back from the files by plain safetensors (the reference's own reading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.models import _byte_level_tokenizer, tiny_vocabulary

MOE_KINDS = ["mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss"]
D_MODEL, D_VOCAB = 16, 300


def random_moe_model(kind: str, seed: int = 0):
    """Mixtral (per-expert w1/w2/w3), Qwen2-MoE with a shared expert, Qwen3-MoE with a dense first
    layer, gpt-oss (fused expert tensors with biases); random norms."""
    import torch
    import transformers as t

    torch.manual_seed(seed)
    small = dict(
        vocab_size=D_VOCAB,
        hidden_size=D_MODEL,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        num_experts_per_tok=2,
    )
    if kind == "mixtral":
        model = t.MixtralForCausalLM(t.MixtralConfig(**small, intermediate_size=12, num_local_experts=4))
    elif kind == "qwen2_moe":
        config = t.Qwen2MoeConfig(
            **small,
            intermediate_size=24,
            num_experts=4,
            moe_intermediate_size=8,
            shared_expert_intermediate_size=12,
        )
        model = t.Qwen2MoeForCausalLM(config)
    elif kind == "qwen3_moe":
        config = t.Qwen3MoeConfig(
            **small,
            intermediate_size=24,
            num_experts=5,
            moe_intermediate_size=8,
            mlp_only_layers=[0],
        )
        model = t.Qwen3MoeForCausalLM(config)
    else:
        config = t.GptOssConfig(
            **small,
            intermediate_size=8,
            num_local_experts=4,
            head_dim=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
        model = t.GptOssForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and "norm" in name:
                parameter.uniform_(0.5, 2.0)
            elif "experts" in name or "shared_expert" in name:
                parameter.normal_(0.0, 0.5)  # experts of distinct sizes, so rankings are not ties
    return model


def write_moe_checkpoint(folder: Path, kind: str, seed: int = 0) -> Path:
    model = random_moe_model(kind, seed)
    model.save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(D_VOCAB)).save_pretrained(folder)
    return folder


def file_experts(folder: Path, layer: int) -> list[tuple[object, np.ndarray]]:
    """(expert, W_out rows [d_expert, d_model] float64) of a layer, read with safetensors.numpy
    and named as each family names them; [] for a dense layer."""
    from safetensors.numpy import load_file

    tensors = {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}
    base = f"model.layers.{layer}"
    found: list[tuple[object, np.ndarray]] = []
    fused = f"{base}.mlp.experts.down_proj"
    if fused in tensors:  # gpt-oss: [experts, d_expert, d_model]
        return [(e, tensors[fused][e].astype(np.float64)) for e in range(tensors[fused].shape[0])]
    for module, down in (("block_sparse_moe", "w2"), ("mlp", "down_proj")):
        e = 0
        while f"{base}.{module}.experts.{e}.{down}.weight" in tensors:
            found.append((e, tensors[f"{base}.{module}.experts.{e}.{down}.weight"].T.astype(np.float64)))
            e += 1
    shared = f"{base}.mlp.shared_expert.down_proj.weight"
    if shared in tensors:
        found.append(("shared", tensors[shared].T.astype(np.float64)))
    return found


def file_unembed(folder: Path) -> np.ndarray:
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            if "lm_head.weight" in handle.keys():
                return handle.get_tensor("lm_head.weight").double().numpy().T  # [d_model, d_vocab]
    raise AssertionError(f"{folder} holds no lm_head.weight")


FP8_BLOCK = (128, 128)


def write_fp8_deepseek(folder: Path, seed: int = 0) -> Path:
    """A tiny DeepSeek-V3 (a dense first layer, routed experts with a shared one, sigmoid routing
    with a score correction) written by transformers, then its MLP projections quantised to FP8
    with 128 x 128 block scales by transformers' own fine-grained FP8 quantiser, as DeepSeek-V3's
    released files are."""
    import json
    from types import SimpleNamespace

    import torch
    import transformers as t
    from safetensors.torch import load_file, save_file
    from transformers.integrations.finegrained_fp8 import Fp8Quantize

    torch.manual_seed(seed)
    config = t.DeepseekV3Config(
        vocab_size=D_VOCAB,
        hidden_size=256,
        intermediate_size=512,
        moe_intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        q_lora_rank=None,
        kv_lora_rank=32,
        qk_rope_head_dim=16,
        qk_nope_head_dim=16,
        v_head_dim=16,
        max_position_embeddings=64,
    )
    model = t.DeepseekV3ForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and "norm" in name:
                parameter.uniform_(0.5, 2.0)
    model.save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(D_VOCAB)).save_pretrained(folder)
    quantiser = Fp8Quantize(
        SimpleNamespace(quantization_config=t.FineGrainedFP8Config(weight_block_size=FP8_BLOCK))
    )
    tensors = load_file(folder / "model.safetensors")
    stored = {}
    for name, value in tensors.items():
        projection = name.endswith(("_proj.weight",)) and ".mlp." in name
        stored.update(quantiser._quantize_one(name, value) if projection else {name: value})
    save_file(stored, folder / "model.safetensors", metadata={"format": "pt"})
    written = json.loads((folder / "config.json").read_text())
    written["quantization_config"] = {
        "quant_method": "fp8",
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "weight_block_size": list(FP8_BLOCK),
    }
    (folder / "config.json").write_text(json.dumps(written))
    return folder


def write_gguf_experts(path: Path, seed: int = 0) -> tuple[Path, dict[int, np.ndarray], np.ndarray]:
    """A qwen2moe GGUF written by the gguf package: a dense layer 0, then two layers of 4 experts
    (their down projections Q8_0-quantised in layer 1) with a shared expert. Returns the file, each
    layer's W_out rows in flat order as stored (dequantised by gguf itself), and W_U [d_model, V]."""
    import gguf

    from engine.data.tokens import byte_level_alphabet

    rng = np.random.default_rng(seed)
    d_model, d_expert, d_shared, d_dense, n_experts = 64, 32, 64, 96, 4
    tokens = tiny_vocabulary(D_VOCAB)
    writer = gguf.GGUFWriter(str(path), "qwen2moe")
    writer.add_block_count(3)
    writer.add_embedding_length(d_model)
    writer.add_feed_forward_length(d_dense)
    writer.add_expert_count(n_experts)
    writer.add_expert_used_count(2)
    writer.add_expert_feed_forward_length(d_expert)
    writer.add_expert_shared_feed_forward_length(d_shared)
    writer.add_tokenizer_model("gpt2")
    alphabet = byte_level_alphabet()
    writer.add_token_list(["".join(alphabet[b] for b in token) for token in tokens])
    writer.add_token_types([1] * len(tokens))

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    embedding = normal(D_VOCAB, d_model)
    writer.add_tensor("token_embd.weight", embedding)
    writer.add_tensor("output.weight", embedding * 0.5)
    writer.add_tensor("output_norm.weight", rng.uniform(0.5, 2.0, d_model).astype(np.float32))
    rows: dict[int, np.ndarray] = {}
    dense = normal(d_model, d_dense)  # nn.Linear's [d_model, d_mlp]
    writer.add_tensor("blk.0.ffn_down.weight", dense)
    writer.add_tensor("blk.0.ffn_up.weight", normal(d_dense, d_model))
    writer.add_tensor("blk.0.ffn_gate.weight", normal(d_dense, d_model))
    rows[0] = dense.T.astype(np.float64)
    for layer in (1, 2):
        down = normal(n_experts, d_model, d_expert)
        if layer == 1:
            quantised = gguf.quants.quantize(down, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(
                f"blk.{layer}.ffn_down_exps.weight", quantised, raw_dtype=gguf.GGMLQuantizationType.Q8_0
            )
            down = gguf.quants.dequantize(quantised, gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(f"blk.{layer}.ffn_down_exps.weight", down)
        writer.add_tensor(f"blk.{layer}.ffn_up_exps.weight", normal(n_experts, d_expert, d_model))
        writer.add_tensor(f"blk.{layer}.ffn_gate_exps.weight", normal(n_experts, d_expert, d_model))
        writer.add_tensor(f"blk.{layer}.ffn_gate_inp.weight", normal(n_experts, d_model))
        shared = normal(d_model, d_shared)
        writer.add_tensor(f"blk.{layer}.ffn_down_shexp.weight", shared)
        writer.add_tensor(f"blk.{layer}.ffn_up_shexp.weight", normal(d_shared, d_model))
        writer.add_tensor(f"blk.{layer}.ffn_gate_shexp.weight", normal(d_shared, d_model))
        rows[layer] = np.concatenate([*(down[e].T for e in range(n_experts)), shared.T]).astype(np.float64)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, rows, (embedding * 0.5).T.astype(np.float64)


def write_mxfp4_gpt_oss(folder: Path, seed: int = 0) -> Path:
    """A tiny gpt-oss written by transformers, its experts then stored as gpt-oss's released files
    store them: MXFP4 ``*_blocks`` (random bytes: every byte is two valid 4-bit values) and
    ``*_scales`` (exponents near 2^0), with the config's ``quantization_config``. transformers reads
    the result back (``Mxfp4Config(dequantize=True)``), which is the reference."""
    import json

    import torch
    import transformers as t
    from safetensors.torch import load_file, save_file

    torch.manual_seed(seed)
    config = t.GptOssConfig(
        vocab_size=D_VOCAB,
        hidden_size=64,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=64,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    t.GptOssForCausalLM(config).save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(D_VOCAB)).save_pretrained(folder)
    generator = torch.Generator().manual_seed(seed)
    stored = {}
    for name, value in load_file(folder / "model.safetensors").items():
        if not name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            stored[name] = value
            continue
        experts, rows_in, rows_out = value.shape  # [experts, in, out] as the bf16 file holds it
        shape = (experts, rows_out, rows_in // 32)
        stored[f"{name}_blocks"] = torch.randint(0, 256, (*shape, 16), generator=generator, dtype=torch.uint8)
        stored[f"{name}_scales"] = torch.randint(122, 130, shape, generator=generator, dtype=torch.uint8)
    save_file(stored, folder / "model.safetensors", metadata={"format": "pt"})
    written = json.loads((folder / "config.json").read_text())
    written["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
    }
    (folder / "config.json").write_text(json.dumps(written))
    return folder
