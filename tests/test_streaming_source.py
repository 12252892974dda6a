"""Checkpoints streamed tensor by tensor against the same checkpoints built through
TransformerBridge, on tiny random sharded checkpoints of six architectures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from models import _byte_level_tokenizer, tiny_vocabulary

from engine.session import EngineOptions, NeuronEngine
from engine.settings import Projection, ScanSettings
from engine.sources.bridge_source import BridgeSource
from engine.sources.safetensors_source import SafetensorsSource

SMALL = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def _model(kind: str):
    import transformers as t

    if kind == "gpt2":
        return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    if kind == "gpt_neox":
        return t.GPTNeoXForCausalLM(t.GPTNeoXConfig(**SMALL, max_position_embeddings=64))
    if kind == "gemma":
        return t.GemmaForCausalLM(t.GemmaConfig(**SMALL, num_key_value_heads=2, head_dim=8))
    if kind == "qwen2":
        return t.Qwen2ForCausalLM(t.Qwen2Config(**SMALL, num_key_value_heads=2, tie_word_embeddings=True))
    if kind == "mistral":
        return t.MistralForCausalLM(t.MistralConfig(**SMALL, num_key_value_heads=2))
    return t.LlamaForCausalLM(t.LlamaConfig(**SMALL, num_key_value_heads=2))


KINDS = ["llama", "gpt2", "gpt_neox", "gemma", "qwen2", "mistral"]


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(KINDS.index(request.param))
    model = _model(request.param)
    with torch.no_grad():  # random norms: folding must be visible
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and ("norm" in name or "ln" in name):
                parameter.uniform_(-0.5, 0.5) if name.endswith("bias") else parameter.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder, max_shard_size="40KB")  # several shards and an index
    _byte_level_tokenizer(tiny_vocabulary(300)).save_pretrained(folder)
    return request.param, folder


def test_streamed_tensors_equal_the_bridge_ones(checkpoint):
    kind, folder = checkpoint
    assert (folder / "model.safetensors.index.json").is_file()
    streamed = SafetensorsSource(folder, "fp", kind)
    bridge = BridgeSource(folder, "fp", kind)
    assert streamed.info == bridge.info
    np.testing.assert_array_equal(streamed.unembed(), bridge.unembed())
    for layer in range(streamed.info.n_layers):
        np.testing.assert_array_equal(streamed.mlp_out(layer), bridge.mlp_out(layer))
    ours, theirs = streamed.final_norm(), bridge.final_norm()
    np.testing.assert_array_equal(ours.scale, theirs.scale)
    assert ours.centres == theirs.centres == (kind in ("gpt2", "gpt_neox"))
    assert streamed.vocabulary().texts == bridge.vocabulary().texts


def test_scans_through_both_loaders_are_identical(checkpoint, tmp_path):
    kind, folder = checkpoint
    settings = ScanSettings(top_k=5, projection=Projection(True, True, True))
    results = {}
    for loader in ("stream", "bridge"):
        engine = NeuronEngine(EngineOptions(model=str(folder), loader=loader, cache_dir=tmp_path / loader))
        results[loader] = [engine.layer(layer, settings) for layer in range(engine.info.n_layers)]
    for ours, theirs in zip(results["stream"], results["bridge"]):
        assert ours.to_bytes() == theirs.to_bytes()


def test_an_architecture_transformer_lens_does_not_know_gets_one_line(tmp_path, tiny_llama_dir):
    folder = tmp_path / "odd"
    folder.mkdir()
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    for file in tiny_llama_dir.glob("*.safetensors"):
        (folder / file.name).write_bytes(file.read_bytes())
    done = run_cli(
        "scan", "--model", str(folder), "--loader", "stream", "--layers", "0", "-o", str(tmp_path / "o.jsonl")
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "NoSuchModelForCausalLM" in lines[0], done.stderr
