"""Bad dictionaries and bad requests: one line naming the field, exit 2, before any heavy work."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engine.dictionaries.catalog import find_dictionaries
from engine.dictionaries.encoder import Encoder
from engine.errors import UserError
from engine.neuron_engine import EngineOptions, NeuronEngine
from tests.helpers.cli import run_cli
from tests.helpers.dictionaries import write_sparsify


def _saelens_copy(library_dictionaries, tmp_path, name="standard", **changes):
    folder = tmp_path / name
    shutil.copytree(library_dictionaries / "saelens" / name, folder)
    config = json.loads((folder / "cfg.json").read_text())
    for key, value in changes.items():
        if key in ("hook_name", "hook_name_out"):
            config["metadata"][key] = value
        else:
            config[key] = value
    (folder / "cfg.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def engine(tiny_llama_dir, tmp_path):  # d_model 32, 2 layers
    found = NeuronEngine(EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "c"))
    yield found
    found.close()


def test_each_bad_dictionary_is_one_line_naming_what_is_wrong(library_dictionaries, engine, tmp_path):
    ok = write_sparsify(tmp_path / "ok", "layers.1", d_in=32)
    cases = {
        "reads 64 dimensions (its config's d_in)": _saelens_copy(library_dictionaries, tmp_path, "standard"),
        "hook_name 'blocks.1.hook_nowhere' is not a hook": _saelens_copy(
            library_dictionaries, tmp_path, "topk", hook_name="blocks.1.hook_nowhere"
        ),
        "reads at 'blocks.7.hook_resid_post' names layer 7, but this model has layers 0-1": _saelens_copy(
            library_dictionaries, tmp_path, "jumprelu", hook_name="blocks.7.hook_resid_post"
        ),
        "architecture 'matryoshka_batchtopk' is not read here": _saelens_copy(
            library_dictionaries, tmp_path, "gated", architecture="matryoshka_batchtopk"
        ),
        "has no 'd_in'": _saelens_copy(library_dictionaries, tmp_path, "transcoder", d_in=None),
        "no dictionary at": tmp_path / "nowhere",
        "no dictionary found in": tmp_path,
    }
    (tmp_path / "nothing").mkdir()
    cases["no dictionary found in"] = tmp_path / "nothing"
    missing = tmp_path / "missing"
    shutil.copytree(ok, missing / "layers.1")
    (missing / "layers.1" / "sae.safetensors").rename(missing / "layers.1" / "other.bin")
    cases["has a cfg.json but no weights"] = missing
    for said, path in cases.items():
        with pytest.raises(UserError, match=said.replace("(", r"\(").replace(")", r"\)")) as caught:
            engine.open_dictionary([str(path)])
        assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="two dictionaries read layer 1"):
        engine.open_dictionary(
            [str(ok), str(write_sparsify(tmp_path / "again", "layers.1", d_in=32, seed=2))]
        )


def test_the_command_line_refuses_in_one_line_with_exit_2(tiny_llama_dir, tmp_path):
    folder = tmp_path / "sparsify"
    write_sparsify(folder, "layers.1", d_in=32)
    cache = ["--model", str(tiny_llama_dir), "--cache-dir", str(tmp_path / "c")]
    refusals = {
        ("scan", "--dictionary", str(folder), "--layers", "0"): "has no dictionary at layer 0",
        ("diff", "--dictionary", str(folder), "--against", str(tiny_llama_dir)): "leave out --dictionary",
        ("scan", "--dictionary", str(tmp_path / "none")): "no dictionary at",
    }
    for args, said in refusals.items():
        result = run_cli(*args, *cache)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_gemma_scope_params_npz_reads_as_its_published_jumprelu(engine, tmp_path):
    rng = np.random.default_rng(5)
    arrays = {
        "W_enc": rng.normal(0, 0.3, (32, 40)),
        "W_dec": rng.normal(0, 0.3, (40, 32)),
        "b_enc": rng.normal(0, 0.3, 40),
        "b_dec": rng.normal(0, 0.3, 32),
        "threshold": rng.uniform(0.05, 0.5, 40),
    }
    path = tmp_path / "gemma-scope-2b-pt-mlp" / "layer_1" / "width_16k" / "average_l0_50" / "params.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, **{name: value.astype(np.float32) for name, value in arrays.items()})
    (dictionary,) = find_dictionaries(path.parent)
    assert (dictionary.info.layer, dictionary.info.hook_in) == (1, "blocks.1.hook_mlp_out")
    x = rng.normal(size=(16, 32))
    pre = x @ arrays["W_enc"].astype(np.float32) + arrays["b_enc"].astype(np.float32)
    expected = (pre > arrays["threshold"].astype(np.float32)) * np.maximum(pre, 0)
    acts = Encoder(dictionary, torch.device("cpu"), torch.float64).encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(acts, expected, rtol=1e-6, atol=1e-7)
    assert 0 < (acts > 0).mean() < 1
    units = engine.open_dictionary([str(path)])
    assert engine.dictionary_infos(units)[1].name == "layer_1/width_16k/average_l0_50"
