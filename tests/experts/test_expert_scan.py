"""Mixture-of-experts checkpoints written by transformers: every expert's scan against float64 read
from the files, the layer's joined products against a scan of the whole layer at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.scan.expert_layer import scan_experts
from engine.scan.layer_scan import scan_layer
from engine.scan.projection import project_unembed
from engine.settings import Projection, ScanSettings
from engine.sources.safetensors_source import SafetensorsSource
from tests.helpers.exactness import assert_layer_matches
from tests.helpers.moe_models import MOE_KINDS, file_experts, file_unembed, write_moe_checkpoint
from tests.helpers.reference import reference_layer


@pytest.fixture(scope="module", params=MOE_KINDS)
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, write_moe_checkpoint(folder, request.param, seed=MOE_KINDS.index(request.param))


def test_layers_name_their_experts_as_the_files_do(checkpoint):
    kind, folder = checkpoint
    info = SafetensorsSource(folder, "fp", kind).info
    assert info.experts_per_token == 2
    for layer in range(info.n_layers):
        expected = [(e, rows.shape[0]) for e, rows in file_experts(folder, layer)]
        found = info.experts(layer)
        if not expected:  # Qwen3-MoE's mlp_only_layers
            assert kind == "qwen3_moe" and layer == 0 and found is None and info.width(0) == 24
            continue
        assert found is not None and [(g.expert, g.size) for g in found.groups] == expected
        assert info.width(layer) == sum(size for _, size in expected)
    if kind == "qwen2_moe":
        assert info.experts(1).groups[-1].expert == "shared"


@pytest.mark.parametrize("projection", [Projection(), Projection(True, True, True)], ids=["raw", "gurnee"])
def test_every_expert_matches_float64_from_the_files(checkpoint, projection, tmp_path):
    kind, folder = checkpoint
    settings = ScanSettings(top_k=6, token_top_n=5, projection=projection)
    engine = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache"))
    source = SafetensorsSource(folder, "fp", kind)
    final_norm = source.final_norm()
    unembed = file_unembed(folder)
    for layer in range(engine.info.n_layers):
        result = engine.layer(layer, settings)
        experts = file_experts(folder, layer)
        w_out = np.concatenate([rows for _, rows in experts]) if experts else source.mlp_out(layer)
        assert result.d_mlp == engine.info.width(layer) == w_out.shape[0]
        ref = reference_layer(w_out, unembed, final_norm, projection, k=6, n=5)
        assert_layer_matches(result, ref)
        # Each token's best unit per norm (coverage) over every expert of the layer.
        # (under --cosine the reference's rows already have unit norm)
        norms = 1.0 if projection.cosine else np.linalg.norm(w_out, axis=1, keepdims=True)
        per_unit = np.abs(ref["scores"]) / norms
        best = per_unit.argmax(axis=0)
        np.testing.assert_array_equal(result.token_unit_best_neuron, best)
    engine.close()


def test_joined_experts_equal_one_scan_of_the_whole_layer(checkpoint):
    """Scanned an expert at a time, the layer is what a scan of all its rows at once gives, its
    histograms included (one window for the layer)."""
    kind, folder = checkpoint
    source = SafetensorsSource(folder, "fp", kind)
    settings = ScanSettings(top_k=5, token_top_n=4)
    unembed = project_unembed(source.unembed(), source.final_norm(), settings, torch.device("cpu"))

    layer = 1
    experts = source.info.experts(layer)
    joined = scan_experts(layer, experts, lambda e: source.expert_out(layer, e), unembed, settings)
    whole = scan_layer(layer, source.mlp_out(layer), unembed, 5, 4)
    exact = (
        "top_ids",
        "top_dots",
        "promote_ids",
        "suppress_ids",
        "max_dot",
        "norm",
        "score_hist",
        "token_unit_best_neuron",
    )
    for name in exact:
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)
    for name in ("mean", "std", "skew", "kurtosis", "token_unit_best"):  # float32 sums, blocked otherwise
        ours, theirs = getattr(joined, name), getattr(whole, name)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=name)
    assert joined.score_hist_top == whole.score_hist_top
    for token in range(unembed.d_vocab):  # the same best candidates (order may differ at equal |dot|)
        assert set(joined.token_neurons[token, :4]) == set(whole.token_neurons[token, :4])


def test_fp8_block_scaled_experts_scan_as_their_dequantised_weights(tmp_path):
    """DeepSeek-V3's layout in FP8: each expert dequantised (by transformers' own dequantiser in
    the reference) and scanned exactly as float64 of those weights."""
    from safetensors.torch import load_file
    from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight

    from tests.helpers.moe_models import FP8_BLOCK, write_fp8_deepseek

    folder = write_fp8_deepseek(tmp_path / "deepseek-fp8")
    tensors = load_file(folder / "model.safetensors")
    layer = 1
    down = f"model.layers.{layer}.mlp.experts.2.down_proj.weight"
    assert tensors[down].dtype == torch.float8_e4m3fn and f"{down[:-7]}.weight_scale_inv" in tensors
    engine = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache"))
    experts = engine.info.experts(layer)
    assert [(g.expert, g.size) for g in experts.groups] == [
        (0, 256),
        (1, 256),
        (2, 256),
        (3, 256),
        ("shared", 256),
    ]
    assert engine.info.experts(0) is None  # first_k_dense_replace
    rows = []
    for group in experts.groups:
        name = "shared_experts" if group.expert == "shared" else f"experts.{group.expert}"
        weight = f"model.layers.{layer}.mlp.{name}.down_proj.weight"
        scale = tensors[weight[: -len("weight")] + "weight_scale_inv"]
        rows.append(
            _dequantize_fp8_weight(tensors[weight], scale, list(FP8_BLOCK), torch.float32).T.double().numpy()
        )
    w_out = np.concatenate(rows)
    settings = ScanSettings(top_k=6, token_top_n=5)
    result = engine.layer(layer, settings)
    source = SafetensorsSource(folder, "fp", "deepseek")
    ref = reference_layer(w_out, file_unembed(folder), source.final_norm(), settings.projection, k=6, n=5)
    assert_layer_matches(result, ref)
    engine.close()


def test_gguf_stacked_experts_scan_as_float64_of_the_file(tmp_path):
    """llama.cpp's ffn_*_exps (Q8_0 in one layer) and shared experts, written by the gguf package."""
    from tests.helpers.moe_models import write_gguf_experts

    path, rows, unembed = write_gguf_experts(tmp_path / "tiny-qwen2moe.gguf")
    engine = NeuronEngine(EngineOptions(model=str(path), cache_dir=tmp_path / "cache"))
    assert engine.info.experts(0) is None and engine.info.experts_per_token == 2
    sizes = [(g.expert, g.size) for g in engine.info.experts(1).groups]
    assert sizes == [(0, 32), (1, 32), (2, 32), (3, 32), ("shared", 64)]
    settings = ScanSettings(top_k=6, token_top_n=5)
    source = engine._ensure_source()
    for layer in range(3):
        ref = reference_layer(rows[layer], unembed, source.final_norm(), settings.projection, k=6, n=5)
        assert_layer_matches(engine.layer(layer, settings), ref)
    engine.close()


def test_mxfp4_experts_scan_as_transformers_dequantises_them(tmp_path):
    """gpt-oss's released layout: each expert's MXFP4 blocks dequantised as transformers does when
    it loads the file (the reference is its loaded, dequantised model)."""
    from transformers import AutoModelForCausalLM, Mxfp4Config

    from tests.helpers.moe_models import write_mxfp4_gpt_oss

    folder = write_mxfp4_gpt_oss(tmp_path / "gpt-oss-mxfp4")
    model = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32
    )
    engine = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache"))
    settings = ScanSettings(top_k=6, token_top_n=5)
    unembed = model.lm_head.weight.detach().double().numpy().T
    final_norm = SafetensorsSource(folder, "fp", "gpt-oss").final_norm()
    for layer in range(2):
        down = model.model.layers[layer].mlp.experts.down_proj.detach().double().numpy()  # [E, in, out]
        w_out = np.concatenate(list(down))
        ref = reference_layer(w_out, unembed, final_norm, settings.projection, k=6, n=5)
        assert_layer_matches(engine.layer(layer, settings), ref)
        inputs = engine._ensure_source().mlp_in(layer)
        gate_up = model.model.layers[layer].mlp.experts.gate_up_proj.detach().numpy()  # [E, d_model, 2I]
        np.testing.assert_array_equal(inputs.gate, np.concatenate([g[:, 0::2].T for g in gate_up]))
        np.testing.assert_array_equal(inputs.up, np.concatenate([g[:, 1::2].T for g in gate_up]))
    engine.close()


def test_input_side_and_token_search_go_expert_by_expert_as_over_the_whole_layer(tmp_path, monkeypatch):
    """The input side in blocks of a few experts equals it computed over the whole layer at once,
    and exact token search over experts equals float64 from the files."""
    import engine.neuron_engine as door
    from engine.scan.input_side import layer_inputs

    folder = write_moe_checkpoint(tmp_path / "qwen2", "qwen2_moe", seed=4)
    monkeypatch.setattr(door, "_INPUT_BLOCK_NEURONS", 12)  # 8-neuron experts: one or two a block
    engine = NeuronEngine(EngineOptions(model=str(folder), cache_dir=tmp_path / "cache"))
    settings = ScanSettings(top_k=5)
    source = SafetensorsSource(folder, "fp", "qwen2")
    for layer in range(engine.info.n_layers):
        found = engine.inputs(layer, settings)
        whole = layer_inputs(
            layer,
            source.mlp_in(layer),
            source.mlp_norm(layer),
            source.mlp_out(layer),
            source.embedding_rows(),
            5,
            torch.device("cpu"),
        )
        assert found.to_bytes() == whole.to_bytes()
    hits = engine.exact_token_neurons([3, 111], [1, 2], 4, settings)
    unembed = file_unembed(folder)
    for token, entries in hits.items():
        scores = [
            (layer, n, float(v))
            for layer in (1, 2)
            for n, v in enumerate(
                np.concatenate([r for _, r in file_experts(folder, layer)]) @ unembed[:, token]
            )
        ]
        best = sorted(scores, key=lambda s: (-abs(s[2]), s[0], s[1]))[:4]
        assert [(e.layer, e.neuron) for e in entries] == [(layer, n) for layer, n, _ in best]
        np.testing.assert_allclose([e.dot for e in entries], [v for _, _, v in best], rtol=1e-9)
    engine.close()
