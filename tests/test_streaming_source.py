"""Checkpoints streamed tensor by tensor against the same checkpoints built through
TransformerBridge, on tiny random sharded checkpoints of six architectures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from models import write_hf_checkpoint

from engine.session import EngineOptions, NeuronEngine
from engine.settings import Projection, ScanSettings
from engine.sources.bridge_source import BridgeSource
from engine.sources.safetensors_source import SafetensorsSource

KINDS = ["llama", "gpt2", "gpt_neox", "gemma", "qwen2", "mistral"]


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    # Several shards and an index.
    write_hf_checkpoint(folder, request.param, seed=KINDS.index(request.param), max_shard_size="40KB")
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
