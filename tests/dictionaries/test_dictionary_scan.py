"""A dictionary's features read against the vocabulary exactly as neurons are: its decoder rows
(from the files its library wrote) against W_U, compared with float64 by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.dictionaries.catalog import find_dictionaries
from engine.dictionaries.encoder import Encoder
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import Projection, ScanSettings
from tests.helpers.dictionaries import load_sparsify, sparsify_acts, write_sparsify
from tests.helpers.exactness import assert_layer_matches
from tests.helpers.models import write_hf_llama
from tests.helpers.moe_models import file_unembed
from tests.helpers.reference import reference_layer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_hf_llama(tmp_path_factory.mktemp("llama") / "m", n_layers=3, d_model=32, d_mlp=64)


@pytest.mark.parametrize("projection", [Projection(), Projection(True, True, True)], ids=["raw", "gurnee"])
def test_sparsify_features_match_float64_of_their_decoder_rows(model, projection, tmp_path):
    from engine.sources.safetensors_source import SafetensorsSource

    folder = tmp_path / "sparsify"
    write_sparsify(folder, "layers.1", d_in=32, num_latents=48)
    write_sparsify(folder, "layers.2.mlp", d_in=32, num_latents=40, transcode=True, seed=1)
    engine = NeuronEngine(EngineOptions(model=str(model), cache_dir=tmp_path / "cache"))
    units = engine.open_dictionary([str(folder)])
    settings = ScanSettings(top_k=6, token_top_n=5, projection=projection, units=units)
    final_norm = SafetensorsSource(model, "fp", "llama").final_norm()
    for layer, hookpoint in ((1, "layers.1"), (2, "layers.2.mlp")):
        result = engine.layer(layer, settings)
        coder = load_sparsify(folder / hookpoint)
        rows = coder.W_dec.detach().numpy()
        assert result.dictionary == hookpoint and result.d_mlp == rows.shape[0]
        assert_layer_matches(result, reference_layer(rows, file_unembed(model), final_norm, projection, 6, 5))
    engine.close()


@pytest.mark.parametrize("kind", ["sae", "transcoder", "groupmax"])
def test_sparsify_encoder_equals_the_library_encode(kind, tmp_path):
    transcode, activation = kind == "transcoder", "groupmax" if kind == "groupmax" else "topk"
    path = write_sparsify(tmp_path, "layers.0", 32, 48, 6, transcode=transcode, activation=activation)
    (dictionary,) = find_dictionaries(path)
    x = np.random.default_rng(3).normal(size=(20, 32))
    ours = Encoder(dictionary, torch.device("cpu"), torch.float64)
    acts = ours.encode(torch.from_numpy(x)).numpy()
    expected = sparsify_acts(load_sparsify(path), x)
    np.testing.assert_allclose(acts, expected, rtol=1e-12, atol=1e-12)
    assert 0 < (acts > 0).mean() < 1


def test_features_and_neurons_side_by_side_by_cosine_of_their_directions(model, tmp_path):
    from safetensors import safe_open

    folder = tmp_path / "sparsify"
    write_sparsify(folder, "layers.1", d_in=32, num_latents=48)
    engine = NeuronEngine(EngineOptions(model=str(model), cache_dir=tmp_path / "cache"))
    units = engine.open_dictionary([str(folder)])
    with safe_open(str(next(model.glob("*.safetensors"))), framework="pt") as handle:
        w_out = handle.get_tensor("model.layers.1.mlp.down_proj.weight").double().numpy().T  # [d_mlp, d]
    directions = load_sparsify(folder / "layers.1").W_dec.detach().numpy()
    cosines = (directions / np.linalg.norm(directions, axis=1, keepdims=True)) @ (
        w_out / np.linalg.norm(w_out, axis=1, keepdims=True)
    ).T  # [features, neurons]
    for of_features, table in ((True, cosines), (False, cosines.T)):
        found = engine.neighbours(1, units, of_features, top=3)
        order = np.argsort(-np.abs(table), axis=1, kind="stable")[:, :3]
        np.testing.assert_array_equal(found.ids, order)
        np.testing.assert_allclose(found.cosines, np.take_along_axis(table, order, 1), rtol=1e-12)
    settings = ScanSettings(top_k=5, units=units)
    record = next(iter(engine.neuron_records(engine.neurons(1, settings), [7], settings)))
    assert (record["layer"], record["feature"], record["dictionary"]) == (1, 7, "layers.1")
    assert [n["neuron"] for n in record["closest_neurons"]] == engine.neighbours(1, units, True).ids[
        7
    ].tolist()
    engine.close()


def test_features_export_to_csv_with_their_dictionary_and_feature_columns(model, tmp_path):
    import csv

    folder = tmp_path / "sparsify"
    write_sparsify(folder, "layers.1", d_in=32, num_latents=48)
    engine = NeuronEngine(EngineOptions(model=str(model), cache_dir=tmp_path / "cache"))
    settings = ScanSettings(top_k=3, units=engine.open_dictionary([str(folder)]))
    path = tmp_path / "features.csv"
    records = engine.neuron_records(engine.neurons(1, settings), None, settings)
    assert engine.write_records(str(path), records, engine.export_metadata(settings)) == 48
    rows = list(csv.DictReader(path.open()))
    assert [(row["dictionary"], row["feature"]) for row in rows[:2]] == [("layers.1", "0"), ("layers.1", "1")]
    assert "neuron" not in rows[0]
    engine.close()
