"""`neuron-tui diff`: a checkpoint against a copy with one layer perturbed, against itself, and
against a model of another shape."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_cli

PERTURBED = (3, 17, 40)  # neurons of layer 1 whose write is turned


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path, dict[int, np.ndarray]]:
    """A tiny Llama and a copy whose layer-1 W_out rows PERTURBED have a known vector added."""
    from tests.helpers.models import write_hf_llama, write_perturbed_copy

    root = tmp_path_factory.mktemp("diff")
    base = write_hf_llama(root / "base", n_layers=3, seed=11)
    added = write_perturbed_copy(base, root / "tuned", 1, PERTURBED)
    return base, root / "tuned", added


def test_diff_against_a_copy_with_layer_1_perturbed(checkpoints, tmp_path):
    from safetensors.numpy import load_file

    base, tuned, _added = checkpoints
    out = tmp_path / "diff.jsonl"
    done = run_cli("diff", "--model", str(base), "--against", str(tuned), "--cache-dir", str(tmp_path / "c"),
                   "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "layer 1: cos p50 1.0000" in done.stderr and "3 turned" in done.stderr
    counted = [line.rsplit(" (", 1)[1] for line in done.stderr.splitlines() if " neurons computed " in line]
    assert counted == ["1/3)", "2/3)", "3/3)"], done.stderr  # each layer once, both scans in it
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 * 64 and records[0]["settings"]["against"]
    (base_file,) = base.glob("*.safetensors")
    (tuned_file,) = tuned.glob("*.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    a, b = load_file(base_file)[name].astype(np.float64), load_file(tuned_file)[name].astype(np.float64)
    for record in records:
        if record["layer"] == 1 and record["neuron"] in PERTURBED:
            i = record["neuron"]
            expected = a[:, i] @ b[:, i] / np.linalg.norm(a[:, i]) / np.linalg.norm(b[:, i])
            assert record["cos"] == pytest.approx(expected, rel=1e-12) and record["cos"] < 0.9999
            assert record["max_dot_change"] != 0
        else:  # everything else is the same unit with the same weights
            assert record["cos"] == pytest.approx(1.0, abs=1e-12)
            assert record["max_dot_change"] == 0 and record["null_z_change"] == 0
            assert record["promote_jaccard"] == record["suppress_jaccard"] == 1.0 and record["top_kept"]
            assert record["promote"] == record["promote_against"]
    # Cached per pair: again, the same bytes without scanning; CSV holds the same rows.
    again = run_cli("diff", "--model", str(base), "--against", str(tuned), "--cache-dir", str(tmp_path / "c"),
                    "--output", str(tmp_path / "again.csv"))  # fmt: skip
    assert again.returncode == 0 and "computed" not in again.stderr, again.stderr
    rows = list(csv.DictReader((tmp_path / "again.csv").open()))
    assert [float(row["cos"]) for row in rows] == [record["cos"] for record in records]


def test_diff_against_itself_is_identical(checkpoints, tmp_path):
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ScanSettings

    base, _tuned, _ = checkpoints
    one, two = (NeuronEngine(EngineOptions(model=str(base), cache_dir=tmp_path / "c")) for _ in range(2))
    one.check_comparable(two)
    for layer in range(3):
        found = one.diff(layer, two, ScanSettings())
        np.testing.assert_allclose(found.cosine, 1.0, rtol=0, atol=1e-12)
        assert (
            found.top_kept.all()
            and (found.promote_jaccard == 1).all()
            and (found.suppress_jaccard == 1).all()
        )
        assert not found.max_dot_change.any() and not found.null_z_change.any()
        assert one.cached_diff(layer, two, ScanSettings()) is not None
    one.close()
    two.close()


def test_diff_refuses_another_shape_in_one_line(checkpoints, tiny_gguf, tmp_path):
    base, _tuned, _ = checkpoints
    refused = run_cli(
        "diff", "--model", str(base), "--against", str(tiny_gguf), "--cache-dir", str(tmp_path / "c")
    )
    assert refused.returncode == 2
    assert "cannot diff" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    missing = run_cli("diff", "--model", str(base), "--cache-dir", str(tmp_path / "c"))
    assert missing.returncode == 2 and "--against" in missing.stderr


def _gguf_of(checkpoint: Path, path: Path) -> Path:
    """The tiny Llama checkpoint's weights written again as a llama GGUF (float32, llama.cpp's
    names): one model in two files, one named ``llama`` and the other ``LlamaForCausalLM``."""
    from safetensors.numpy import load_file

    from tests.helpers.models import TinyWeights, tiny_vocabulary, write_gguf

    (weights_file,) = checkpoint.glob("*.safetensors")
    tensors = load_file(weights_file)
    layers = range(len([name for name in tensors if name.endswith("mlp.down_proj.weight")]))

    def each(name: str) -> list[np.ndarray]:
        return [np.ascontiguousarray(tensors[f"model.layers.{layer}.{name}.weight"]) for layer in layers]

    unembed = np.ascontiguousarray(tensors["lm_head.weight"].T)
    weights = TinyWeights(
        w_out=[np.ascontiguousarray(w.T) for w in each("mlp.down_proj")],
        unembed=unembed,
        final_norm=tensors["model.norm.weight"],
        tokens=tiny_vocabulary(unembed.shape[1]),
        w_gate=each("mlp.gate_proj"),
        w_up=each("mlp.up_proj"),
        mlp_norm=each("post_attention_layernorm"),
    )
    return write_gguf(path, weights)


def test_a_gguf_diffs_against_a_hugging_face_copy_and_counts_each_layer_once(checkpoints, tmp_path):
    base, tuned, _added = checkpoints
    gguf = _gguf_of(base, tmp_path / "base.gguf")
    out = tmp_path / "diff.jsonl"
    done = run_cli("diff", "--model", str(gguf), "--against", str(tuned), "--layers", "0,1",
                   "--cache-dir", str(tmp_path / "c"), "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * 64
    for record in records:
        if record["layer"] == 1 and record["neuron"] in PERTURBED:
            assert record["cos"] < 0.9999
        else:  # the same weights, read from a GGUF on one side and safetensors on the other
            assert record["cos"] == pytest.approx(1.0, abs=1e-12) and record["max_dot_change"] == 0
            assert record["top_kept"] and record["promote"] == record["promote_against"]
    counted = [line.rsplit("(", 1)[1] for line in done.stderr.splitlines() if " neurons computed " in line]
    assert counted == ["1/2)", "2/2)"], done.stderr  # a layer is one piece of work, both scans in it
    again = run_cli("diff", "--model", str(gguf), "--against", str(tuned), "--layers", "0,1",
                    "--cache-dir", str(tmp_path / "c"), "--output", str(out))  # fmt: skip
    assert again.returncode == 0 and again.stderr.count("from cache") == 2, again.stderr


def test_architecture_families_are_alike_across_gguf_and_hugging_face_names():
    from engine.data.diff import family

    pairs = [  # what GGUFSource and the streamed or bridged checkpoints report for one model
        ("llama", "LlamaForCausalLM"),
        ("llama", "MistralForCausalLM"),
        ("qwen2", "Qwen2ForCausalLM"),
        ("gemma", "GemmaForCausalLM"),
        ("gemma2", "Gemma2ForCausalLM"),
        ("gpt2", "GPT2LMHeadModel"),
        ("gptneox", "GPTNeoXForCausalLM"),
        ("phi3", "Phi3ForCausalLM"),
        ("phi2", "PhiForCausalLM"),
    ]
    for gguf_name, hf_name in pairs:
        assert family(gguf_name) == family(hf_name), (gguf_name, hf_name)
    names = {family(name) for name in ("llama", "gpt2", "gptneox", "gemma", "gemma2", "qwen2", "phi3")}
    assert len(names) == 7  # and different families stay apart


@pytest.mark.slow
@pytest.mark.xdist_group("bundled-transformers")
def test_the_bundled_gguf_diffs_against_its_hugging_face_copy(transformers_bundled, tmp_path):
    """The bundled GGUF through transformers, saved as a Llama checkpoint with one neuron's write
    changed: that neuron turned, every other neuron of its layer identical."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from engine.sources.resolve import locate_model

    layer, neuron = 3, 17
    bundled = locate_model(None).path
    folder, name = bundled.parent, bundled.name
    loaded = transformers_bundled  # shared: read here, never changed
    copy = LlamaForCausalLM(loaded.config)  # a GGUF-loaded model will not save itself
    copy.load_state_dict(loaded.state_dict())  # copies the values: the change below is the copy's
    with torch.no_grad():
        column = copy.model.layers[layer].mlp.down_proj.weight[:, neuron]
        before = column.double().clone()
        column += 0.05 * torch.sign(column)
        after = column.double().clone()
    copy.save_pretrained(tmp_path / "copy")
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(tmp_path / "copy")
    del copy
    out = tmp_path / "diff.jsonl"
    done = run_cli("diff", "--against", str(tmp_path / "copy"), "--layers", str(layer),
                   "--cache-dir", str(tmp_path / "c"), "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1536 and {record["layer"] for record in records} == {layer}
    expected = float(before @ after / before.norm() / after.norm())
    for record in records:
        if record["neuron"] == neuron:
            assert record["cos"] == pytest.approx(expected, rel=1e-9) and record["cos"] < 0.9999
        else:
            assert record["cos"] == pytest.approx(1.0, abs=1e-12) and record["max_dot_change"] == 0
            assert record["top_kept"] and record["promote_jaccard"] == record["suppress_jaccard"] == 1.0
    assert "1 turned" in done.stderr and "(1/1)" in done.stderr, done.stderr
