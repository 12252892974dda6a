"""Tiny random models built in code (no downloads): GGUF files and Hugging Face checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.data.tokens import byte_level_alphabet

# Tokens that exercise display and export: markup, ANSI escapes, control characters, invalid UTF-8.
HOSTILE_TOKENS = [
    " coming",
    "Coming",
    "St",
    "[/]",
    "[bold]x",
    "\x1b[31m",
    "a\nb",
    "nul\x00",
    "=cmd()",
    "+1",
    "-2",
    "@SUM",
]


@dataclass
class TinyWeights:
    """The float32 arrays a tiny model was built from, in TransformerLens orientation."""

    w_out: list[np.ndarray]  # per layer [d_mlp, d_model]
    unembed: np.ndarray  # [d_model, d_vocab]
    final_norm: np.ndarray  # [d_model]
    tokens: list[bytes]
    w_gate: list[np.ndarray]  # per layer [d_mlp, d_model]
    w_up: list[np.ndarray]  # per layer [d_mlp, d_model]
    mlp_norm: list[np.ndarray]  # per layer [d_model]: the norm before the MLP


def tiny_vocabulary(size: int) -> list[bytes]:
    """Byte tokens 0-255 first, then hostile and filler tokens; one token is invalid UTF-8."""
    tokens = [bytes([b]) for b in range(256)] + [t.encode() for t in HOSTILE_TOKENS] + [b"\xe2\x80"]
    tokens += [f"tok{i}".encode() for i in range(len(tokens), size)]
    return tokens[:size]


def random_weights(n_layers=3, d_model=32, d_mlp=96, d_vocab=400, seed=0) -> TinyWeights:
    rng = np.random.default_rng(seed)
    weights = TinyWeights(
        w_out=[rng.standard_normal((d_mlp, d_model)).astype(np.float32) for _ in range(n_layers)],
        unembed=rng.standard_normal((d_model, d_vocab)).astype(np.float32),
        final_norm=rng.uniform(0.5, 2.0, d_model).astype(np.float32),
        tokens=tiny_vocabulary(d_vocab),
        w_gate=[],
        w_up=[],
        mlp_norm=[],
    )
    # Drawn after the rest, from their own stream: the scan's weights stay what they always were.
    inputs = np.random.default_rng(seed + 1000)
    for _ in range(n_layers):
        weights.w_gate.append(inputs.standard_normal((d_mlp, d_model)).astype(np.float32))
        weights.w_up.append(inputs.standard_normal((d_mlp, d_model)).astype(np.float32))
        weights.mlp_norm.append(inputs.uniform(0.5, 2.0, d_model).astype(np.float32))
    return weights


def write_gguf(path: Path, weights: TinyWeights, quantise_embedding: bool = False) -> Path:
    """A llama-architecture GGUF holding what a scan reads, the MLP input rows and the norms
    before the MLPs (plus a byte-level vocabulary)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    d_model, d_vocab = weights.unembed.shape
    writer.add_block_count(len(weights.w_out))
    writer.add_embedding_length(d_model)
    writer.add_feed_forward_length(weights.w_out[0].shape[0])
    writer.add_tokenizer_model("gpt2")
    alphabet = byte_level_alphabet()
    stored = ["".join(alphabet[b] for b in token) for token in weights.tokens]
    writer.add_token_list(stored)
    writer.add_token_types([1] * len(stored))
    embedding = np.ascontiguousarray(weights.unembed.T)  # [d_vocab, d_model]
    if quantise_embedding:
        quantised = gguf.quants.quantize(embedding, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor("output.weight", quantised, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor("output.weight", embedding)
    writer.add_tensor("token_embd.weight", embedding)
    writer.add_tensor("output_norm.weight", weights.final_norm)
    for layer, w_out in enumerate(weights.w_out):
        writer.add_tensor(f"blk.{layer}.ffn_down.weight", np.ascontiguousarray(w_out.T))  # nn.Linear layout
        if weights.w_gate:
            writer.add_tensor(f"blk.{layer}.ffn_gate.weight", weights.w_gate[layer])
            writer.add_tensor(f"blk.{layer}.ffn_up.weight", weights.w_up[layer])
            writer.add_tensor(f"blk.{layer}.ffn_norm.weight", weights.mlp_norm[layer])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _byte_level_tokenizer(tokens: list[bytes]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = byte_level_alphabet()
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault("".join(alphabet[b] for b in token), len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


def write_hf_llama(
    folder: Path, n_layers=2, d_model=32, d_mlp=64, d_vocab=300, seed=0, with_bos: bool = False
) -> Path:
    """A tiny random Llama; ``with_bos``: its last token is the tokenizer's BOS (TransformerLens
    prepends one to every prompt, and would add a token past the vocabulary otherwise)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=d_vocab,
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # random norms, so folding the final norm is visible
        model.model.norm.weight.uniform_(0.5, 2.0)
    model.save_pretrained(folder)
    tokenizer = _byte_level_tokenizer(tiny_vocabulary(d_vocab))
    if with_bos:
        tokenizer.bos_token = tiny_vocabulary(d_vocab)[-1].decode()
    tokenizer.save_pretrained(folder)
    return folder


def write_hf_gpt2(folder: Path, n_layers=2, d_model=32, d_vocab=300, seed=1) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=d_vocab, n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=64)
    )
    model.save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(d_vocab)).save_pretrained(folder)
    return folder


def random_hf_model(kind: str, seed: int = 0):
    """A tiny random transformers model of ``kind`` (llama, gpt2, gpt_neox, gemma, qwen2, mistral),
    with random final-norm weights (and biases), so that folding the norm shows."""
    import torch
    import transformers as t

    small = dict(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    torch.manual_seed(seed)
    if kind == "gpt2":
        model = t.GPT2LMHeadModel(
            t.GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=64)
        )
    elif kind == "gpt_neox":
        model = t.GPTNeoXForCausalLM(t.GPTNeoXConfig(**small, max_position_embeddings=64))
    elif kind == "gemma":
        model = t.GemmaForCausalLM(t.GemmaConfig(**small, num_key_value_heads=2, head_dim=8))
    elif kind == "qwen2":
        model = t.Qwen2ForCausalLM(t.Qwen2Config(**small, num_key_value_heads=2, tie_word_embeddings=True))
    elif kind == "mistral":
        model = t.MistralForCausalLM(t.MistralConfig(**small, num_key_value_heads=2))
    else:
        model = t.LlamaForCausalLM(t.LlamaConfig(**small, num_key_value_heads=2))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and ("norm" in name or "ln" in name):
                parameter.uniform_(-0.5, 0.5) if name.endswith("bias") else parameter.uniform_(0.5, 2.0)
    return model


def write_hf_checkpoint(folder: Path, kind: str, seed: int = 0, max_shard_size: str | None = None) -> Path:
    model = random_hf_model(kind, seed)
    model.save_pretrained(folder, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    _byte_level_tokenizer(tiny_vocabulary(300)).save_pretrained(folder)
    return folder


def write_perturbed_copy(
    base: Path, copy: Path, layer: int, neurons: tuple[int, ...], scale: float = 0.05, seed: int = 0
) -> dict[int, np.ndarray]:
    """A copy of the Llama checkpoint ``base`` whose layer-``layer`` W_out rows ``neurons`` have a
    random vector of about ``scale`` per entry added; returns what was added to each."""
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(base, copy)
    (weights,) = copy.glob("*.safetensors")
    tensors = load_file(weights)
    name = f"model.layers.{layer}.mlp.down_proj.weight"  # [d_model, d_mlp]: column i is neuron i's write
    rng = np.random.default_rng(seed)
    added = {}
    for neuron in neurons:
        added[neuron] = (rng.standard_normal(tensors[name].shape[0]) * scale).astype(np.float32)
        tensors[name][:, neuron] += added[neuron]
    save_file(tensors, weights, metadata={"format": "pt"})
    return added


def random_layer(seed, d_model: int, d_mlp: int, d_vocab: int, scale: float = 1.0):
    """A random layer's (W_out [d_mlp, d_model] times ``scale``, W_U [d_model, d_vocab], final-norm
    weight [d_model]) in float32, drawn in that order from ``seed`` (a number or a Generator)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((d_mlp, d_model)) * scale).astype(np.float32)
    u = rng.standard_normal((d_model, d_vocab)).astype(np.float32)
    g = rng.uniform(0.5, 2.0, d_model).astype(np.float32)
    return w, u, g
