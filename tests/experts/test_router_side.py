"""Each expert's router row against the vocabulary, against float64 read from the files: the
embedding through the norm before the MLP, the router's logits, the top-k the router keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from engine.neuron_engine import EngineOptions, NeuronEngine
from tests.helpers.cli import run_cli
from tests.helpers.moe_models import write_moe_checkpoint

LAYER, TOP = 1, 6


def _reference(folder, router: str, with_bias: bool):
    tensors = load_file(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    embedding = tensors["model.embed_tokens.weight"].astype(np.float64)
    scale = tensors[f"model.layers.{LAYER}.post_attention_layernorm.weight"].astype(np.float64)
    x = embedding / np.sqrt((embedding**2).mean(axis=1, keepdims=True) + config["rms_norm_eps"]) * scale
    logits = x @ tensors[f"{router}.weight"].astype(np.float64).T
    if with_bias:
        logits += tensors[f"{router}.bias"]
    chosen = np.argsort(-logits, axis=1, kind="stable")[:, : config["num_experts_per_tok"]]
    return logits, chosen


@pytest.mark.parametrize(
    "kind, router, with_bias",
    [
        ("mixtral", "model.layers.1.block_sparse_moe.gate", False),
        ("gpt_oss", "model.layers.1.mlp.router", True),
    ],
)
def test_router_tokens_and_shares_match_float64_from_the_files(kind, router, with_bias, tmp_path):
    folder = write_moe_checkpoint(tmp_path / kind, kind, seed=7)
    engine = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache"))
    found = engine.routing(LAYER, TOP)
    logits, chosen = _reference(folder, router, with_bias)
    n_vocab, n_experts = logits.shape
    assert found.per_token == chosen.shape[1] and found.n_experts == n_experts
    for expert in range(n_experts):
        order = np.argsort(-logits[:, expert], kind="stable")[:TOP]
        np.testing.assert_array_equal(found.top_ids[expert], order)
        np.testing.assert_allclose(found.top_logits[expert], logits[order, expert], rtol=1e-9)
        share = (chosen == expert).any(axis=1).mean()
        assert found.chosen_share[expert] == pytest.approx(share, abs=1.5 / n_vocab)
    np.testing.assert_allclose(found.chosen_share.sum(), chosen.shape[1])
    again = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache")).routing(LAYER, TOP)
    np.testing.assert_array_equal(again.top_ids, found.top_ids)  # from the cache


def test_the_experts_command_lists_each_expert_and_refuses_a_dense_layer(tmp_path):
    folder = write_moe_checkpoint(tmp_path / "qwen3", "qwen3_moe", seed=8)
    cache = str(tmp_path / "cache")
    done = run_cli("experts", "--model", str(folder), "--layers", "1", "--top-k", "3", "--cache-dir", cache)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["expert"] for r in records] == [0, 1, 2, 3, 4]
    first = records[0]
    assert first["layer"] == 1 and first["neurons"] == 8 and len(first["router_top"]) == 3
    assert {"token_id", "token", "logit"} <= set(first["router_top"][0])
    assert abs(sum(r["vocab_share"] for r in records) - 2.0) < 1e-9
    assert "max_dot_p99" in first
    # The same command's checks, in this process: a dense layer named alone is refused (the one
    # line above's UserError); one in a list is left out, with a note.
    from engine.errors import UserError
    from engine.settings import ScanSettings
    from tui.cli.commands.experts import expert_records

    engine = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache"))
    with pytest.raises(UserError, match="layer 0 has no experts"):
        expert_records(engine, ScanSettings(top_k=3), [0], explicit=True)
    mixed = expert_records(engine, ScanSettings(top_k=3), [0, 1], explicit=True)
    assert {r["layer"] for r in mixed} == {1} and "note: left out dense layer(s) 0" in engine.warnings[-1]
