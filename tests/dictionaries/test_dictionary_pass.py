"""A dictionary's features on the corpus: read at the hook its config names, encoded as its library
encodes them; compared with the library's own ``encode``/``decode`` on every position's activations
from the plain Hugging Face model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.activations.documents import Corpus
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tests.engine.test_activations import random_documents
from tests.helpers.dictionaries import explained_variance, hf_sites, load_sparsify, write_sparsify


@pytest.mark.parametrize(
    "hookpoint, site", [("layers.1", "resid_post"), ("layers.1.mlp", "mlp_in")], ids=["sae", "transcoder"]
)
def test_feature_evidence_equals_the_library_on_every_position(tiny_llama_dir, tmp_path, hookpoint, site):
    folder = tmp_path / "dictionaries"
    path = write_sparsify(folder, hookpoint, d_in=32, num_latents=40, k=5, transcode=site == "mlp_in")
    engine = NeuronEngine(EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "c"))
    scan = ScanSettings(top_k=10, units=engine.open_dictionary([str(folder)]))
    documents = random_documents(2)
    settings = ActivationSettings(context=24, examples=5, lift_positions=8, batch_tokens=72)
    got = engine.corpus_pass([1], Corpus("random", documents), settings, scan)[1]

    bridge, tokenizer, _ = engine.activation_model()
    sites = hf_sites(bridge.original_model, tokenizer, documents, 24, 1)
    coder = load_sparsify(path)
    with torch.no_grad():
        x = torch.from_numpy(sites[site])
        out = coder.encode(x)
        acts = torch.zeros(x.shape[0], coder.num_latents, dtype=torch.float64)
        acts.scatter_(1, out.top_indices, out.top_acts)
        reconstruction = coder.decode(out.top_acts, out.top_indices).numpy()
    acts = acts.numpy()
    assert got.n_positions == acts.shape[0]
    np.testing.assert_array_equal(got.positive.density, (acts > 0).mean(axis=0))
    assert (got.negative.density == 0).all()  # top-k after a ReLU: never negative
    fired = acts.max(axis=0) > 0
    assert 0 < fired.mean() < 1 or fired.all()
    np.testing.assert_allclose(got.positive.values[fired, 0], acts.max(axis=0)[fired], rtol=1e-4)
    target = sites["resid_post"] if site == "resid_post" else sites["mlp_out"]
    assert got.explained_variance == pytest.approx(explained_variance(target, reconstruction), rel=1e-4)
    assert got.dead_share == pytest.approx(1.0 - fired.mean())
    engine.close()


def test_the_probe_reads_features_as_the_library_encodes_the_text(tiny_llama_dir, tmp_path):
    folder = tmp_path / "dictionaries"
    path = write_sparsify(folder, "layers.1", d_in=32, num_latents=40, k=5)
    engine = NeuronEngine(EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "c"))
    units = engine.open_dictionary([str(folder)])
    text = "abc def, ghi. jk lmnop"
    firing = engine.probe_layer(text, 1, units)
    bridge, tokenizer, _ = engine.activation_model()
    x = hf_sites(bridge.original_model, tokenizer, [text], 64, 1)["resid_post"]
    coder = load_sparsify(path)
    with torch.no_grad():
        out = coder.encode(torch.from_numpy(x))
        acts = torch.zeros(x.shape[0], 40, dtype=torch.float64).scatter_(1, out.top_indices, out.top_acts)
    np.testing.assert_allclose(firing.activations, acts.numpy(), rtol=1e-4, atol=1e-5)
    found, _ = engine.probe(text, [1], 3, ScanSettings(units=units))
    assert found.neurons.max() < 40  # features of the dictionary, with their activations
    expected = np.take_along_axis(firing.activations, found.neurons[:, 0, :], axis=1)
    np.testing.assert_allclose(found.activations[:, 0, :], expected, rtol=1e-6)
    engine.close()
