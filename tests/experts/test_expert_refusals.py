"""A checkpoint of experts that does not hold what its config says: one line naming the tensor,
exit 2, before any scan (once through the command line; the other refusals are the same UserError
from the engine, which the command line turns into that line)."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from engine.errors import UserError
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ScanSettings
from engine.sources.expert_tensors import EXPERT_COUNT_KEYS
from tests.helpers.cli import run_cli
from tests.helpers.moe_models import write_moe_checkpoint


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return write_moe_checkpoint(tmp_path_factory.mktemp("moe") / "qwen3", "qwen3_moe")


@pytest.fixture(scope="module")
def gpt_oss(tmp_path_factory):
    return write_moe_checkpoint(tmp_path_factory.mktemp("moe") / "oss", "gpt_oss")


def _experts_to(count):
    """Set the expert count under whichever key config.json uses for it."""

    def change(config):
        for key in EXPERT_COUNT_KEYS:
            if key in config:
                config[key] = count

    return change


def _copy(folder, tmp_path, change_config=None, change_tensors=None):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    if change_config:
        config = json.loads((copy / "config.json").read_text())
        change_config(config)
        (copy / "config.json").write_text(json.dumps(config))
    if change_tensors:
        tensors = load_file(copy / "model.safetensors")
        change_tensors(tensors)
        save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    return copy


def _refused(folder, tmp_path, command_line: bool = False) -> str:
    """The refusal's one line: from ``neuron-tui scan`` (exit 2, nothing on stdout), or from the
    engine that the command line runs (the UserError it turns into that line)."""
    if command_line:
        done = run_cli("scan", "--model", str(folder), "--layers", "1", "--cache-dir", str(tmp_path / "c"))
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stdout == ""
        return lines[0]
    with pytest.raises(UserError) as refused:
        NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "c")).layer(1, ScanSettings())
    assert "\n" not in str(refused.value)
    return str(refused.value)


def test_a_config_naming_experts_the_files_lack(qwen3, tmp_path):
    copy = _copy(qwen3, tmp_path, change_config=_experts_to(7))
    line = _refused(copy, tmp_path, command_line=True)
    assert "model.layers.1.mlp.experts.5.down_proj.weight" in line and "7 experts" in line


def test_a_fused_tensor_holding_fewer_experts_than_the_config(gpt_oss, tmp_path):
    copy = _copy(gpt_oss, tmp_path, change_config=_experts_to(6))
    line = _refused(copy, tmp_path)
    assert "model.layers.0.mlp.experts.down_proj holds 4 experts" in line


def test_an_expert_of_another_size(qwen3, tmp_path):
    def shrink(tensors):
        name = "model.layers.2.mlp.experts.3.down_proj.weight"
        tensors[name] = tensors[name][:, :5].contiguous()

    line = _refused(_copy(qwen3, tmp_path, change_tensors=shrink), tmp_path)
    assert "model.layers.2.mlp.experts.3.down_proj.weight has 5 neurons" in line


def test_an_expert_in_a_quantisation_it_cannot_read(qwen3, tmp_path):
    def quantise(tensors):
        name = "model.layers.1.mlp.experts.2.up_proj.weight"
        tensors[name] = (tensors[name] * 100).to(torch.int8)

    import torch

    line = _refused(_copy(qwen3, tmp_path, change_tensors=quantise), tmp_path)
    assert "model.layers.1.mlp.experts.2.up_proj.weight is stored as I8" in line


def test_the_bridge_loader_is_refused_for_experts_warm_cache_or_not(qwen3, tmp_path):
    cache = tmp_path / "c"
    done = run_cli(
        "scan", "--model", str(qwen3), "--layers", "1", "--loader", "bridge", "--cache-dir", str(cache)
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "experts" in done.stderr and done.stdout == ""
    NeuronEngine(EngineOptions(model=str(qwen3), cache_dir=cache)).layer(1, ScanSettings())  # now cached
    for loader, words in (("bridge", "experts"), ("gguf", ".gguf file")):
        with pytest.raises(UserError, match=words):  # refused all the same
            NeuronEngine(EngineOptions(model=str(qwen3), cache_dir=cache, loader=loader))


def test_more_experts_per_token_than_a_layer_has(qwen3, tmp_path):
    copy = _copy(qwen3, tmp_path, change_config=lambda c: c.update(num_experts_per_tok=9))
    assert "num_experts_per_tok is 9, more than the 5 experts" in _refused(copy, tmp_path)
