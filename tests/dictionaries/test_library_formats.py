"""Every format as its library writes it: the encoder and decoder read from SAELens's, circuit-
tracer's and sparsify's own files give the libraries' own ``encode`` and ``decode`` outputs
(float64), and the features' decoder rows scan as float64 by hand on a model of their width."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.dictionaries.catalog import find_dictionaries
from engine.dictionaries.encoder import Encoder
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import Projection, ScanSettings
from tests.helpers.exactness import assert_layer_matches
from tests.helpers.models import write_hf_llama
from tests.helpers.moe_models import file_unembed
from tests.helpers.reference import reference_layer

SAELENS = [
    "standard",
    "standard_no_bdec",
    "standard_layer_norm",
    "standard_constant_norm_rescale",
    "standard_expected_average_only_in",
    "topk",
    "topk_rescale",
    "jumprelu",
    "jumprelu_b_dec",
    "gated",
    "gated_no_bdec",
    "transcoder",
    "jumprelu_transcoder",
    "skip_transcoder",
]
SPARSIFY = ["sae_topk", "sae_groupmax", "transcoder_skip"]


def _check(dictionary, x: np.ndarray, expected, rows=slice(None)) -> None:
    encoder = Encoder(dictionary, torch.device("cpu"), torch.float64)
    inputs = torch.from_numpy(x.astype(np.float64))
    acts = encoder.encode(inputs)
    np.testing.assert_allclose(acts.numpy(), expected["acts_f64"][rows], rtol=1e-10, atol=1e-12)
    recon = encoder.decode(acts, inputs).numpy()
    np.testing.assert_allclose(recon, expected["recon_f64"][rows], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SAELENS)
def test_saelens_files_encode_and_decode_as_saelens_does(library_dictionaries, name):
    folder = library_dictionaries / "saelens" / name
    (dictionary,) = find_dictionaries(folder)
    assert dictionary.info.format == "saelens" and dictionary.info.layer == 1
    expected = np.load(folder / "expected.npz")
    _check(dictionary, expected["x"], expected)


@pytest.mark.parametrize("name", SPARSIFY)
def test_sparsify_files_encode_and_decode_as_sparsify_does(library_dictionaries, name):
    (dictionary,) = find_dictionaries(library_dictionaries / "sparsify" / name)
    expected = np.load(next((library_dictionaries / "sparsify" / name).rglob("expected.npz")))
    _check(dictionary, expected["x"], expected)


@pytest.mark.parametrize("name", ["plt_relu", "plt_jumprelu_skip"])
def test_circuit_tracer_transcoder_sets_encode_and_decode_as_circuit_tracer_does(library_dictionaries, name):
    folder = library_dictionaries / "circuit_tracer" / name
    found = find_dictionaries(folder)
    expected = np.load(folder / "expected.npz")
    assert [d.info.layer for d in found] == [0, 1, 2]
    for layer, dictionary in enumerate(found):
        assert dictionary.info.hook_in.startswith(f"blocks.{layer}.")
        layer_expected = {key: expected[key][layer] for key in ("acts_f64", "recon_f64")}
        _check(dictionary, expected["x"][layer], layer_expected)


@pytest.mark.parametrize("name", ["clt_relu", "clt_jumprelu"])
def test_cross_layer_transcoders_encode_and_reconstruct_as_circuit_tracer_does(library_dictionaries, name):
    folder = library_dictionaries / "circuit_tracer" / name
    found = find_dictionaries(folder)
    expected = np.load(folder / "expected.npz")
    n_layers = len(found)
    assert [d.info.writes_to for d in found] == [tuple(range(i, n_layers)) for i in range(n_layers)]
    encoders = [Encoder(d, torch.device("cpu"), torch.float64) for d in found]
    x = torch.from_numpy(expected["x"].astype(np.float64))
    acts = [encoder.encode(x[layer]) for layer, encoder in enumerate(encoders)]
    for layer in range(n_layers):
        np.testing.assert_allclose(acts[layer].numpy(), expected["acts_f64"][layer], rtol=1e-10, atol=1e-12)
        # A layer's output is every earlier layer's features' writes to it, and its own bias.
        bias = found[layer].b_dec_out[layer]
        total = bias + sum(
            encoders[source].decode(acts[source], x[source], layer).numpy() - bias
            for source in range(layer + 1)
        )
        np.testing.assert_allclose(total, expected["recon_f64"][layer], rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A tiny Llama as wide as the libraries' dictionaries (d_model 64), with the layers they read."""
    return write_hf_llama(tmp_path_factory.mktemp("wide") / "m", n_layers=3, d_model=64, d_mlp=80)


@pytest.mark.parametrize("path", ["saelens/jumprelu", "saelens/skip_transcoder", "circuit_tracer/clt_relu"])
def test_library_features_scan_as_float64_of_their_decoder_rows(
    library_dictionaries, wide_model, path, tmp_path
):
    from engine.sources.safetensors_source import SafetensorsSource

    engine = NeuronEngine(EngineOptions(model=str(wide_model), cache_dir=tmp_path / "cache"))
    projection = Projection(True, True, True)
    settings = ScanSettings(top_k=6, token_top_n=5, projection=projection)
    settings = ScanSettings(
        **{**settings.__dict__, "units": engine.open_dictionary([str(library_dictionaries / path)])}
    )
    final_norm = SafetensorsSource(wide_model, "fp", "llama").final_norm()
    for dictionary in find_dictionaries(library_dictionaries / path):
        result = engine.layer(dictionary.info.layer, settings)
        reference = reference_layer(
            dictionary.direction_rows64(), file_unembed(wide_model), final_norm, projection, 6, 5
        )
        assert_layer_matches(result, reference)
    engine.close()


def test_opening_reads_shapes_only_and_each_layer_loads_when_used(library_dictionaries, wide_model, tmp_path):
    from engine.dictionaries.catalog import describe_dictionaries

    for folder in ("saelens/gated", "circuit_tracer/plt_jumprelu_skip", "circuit_tracer/clt_jumprelu"):
        for entry in describe_dictionaries(library_dictionaries / folder):
            loaded = entry.load()
            assert entry.info == loaded.info and entry.described.files == loaded.files
            described = entry.described.W_enc
            assert described.shape == loaded.W_enc.shape and described.strides == (0, 0)  # no data
    engine = NeuronEngine(EngineOptions(model=str(wide_model), cache_dir=tmp_path / "cache"))
    units = engine.open_dictionary([str(library_dictionaries / "circuit_tracer" / "clt_relu")])
    found = engine.dictionary_set(units)
    engine.check_unit_layers([0, 1, 2], ScanSettings(units=units))
    assert not found._loaded
    engine.layer(2, ScanSettings(units=units))
    assert list(found._loaded) == [2]
    engine.close()


@pytest.mark.parametrize("name", ["topk_rescale", "jumprelu", "gated"])
def test_what_an_activation_writes_is_the_librarys_reconstruction(library_dictionaries, name):
    """The attribution's W_out: activations times ``directions`` plus the bias is the library's
    reconstruction (a rescaled top-k's activations are divided by its decoder norms first)."""
    folder = library_dictionaries / "saelens" / name
    (dictionary,) = find_dictionaries(folder)
    expected = np.load(folder / "expected.npz")
    encoder = Encoder(dictionary, torch.device("cpu"), torch.float64)
    acts = encoder.encode(torch.from_numpy(expected["x"].astype(np.float64)))
    written = (acts @ encoder.directions + encoder.b_dec).numpy()
    np.testing.assert_allclose(written, expected["recon_f64"], rtol=1e-10, atol=1e-12)
