"""Model sources give TransformerLens-oriented float32 weights and exact token bytes."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from engine.sources.base import check_orientation
from engine.sources.resolve import locate_model, open_source
from tests.helpers.models import write_gguf


def test_gguf_source_reads_exact_weights(tiny_gguf, tiny_weights):
    source = open_source(locate_model(str(tiny_gguf)))
    info = source.info
    assert (info.n_layers, info.d_model, info.d_mlp, info.d_vocab) == (3, 32, 96, 400)
    for layer in range(3):
        np.testing.assert_array_equal(source.mlp_out(layer), tiny_weights.w_out[layer])
    np.testing.assert_array_equal(source.unembed(), tiny_weights.unembed)
    np.testing.assert_array_equal(source.final_norm_weight(), tiny_weights.final_norm)
    vocab = source.vocabulary()
    assert [vocab.token_bytes(i) for i in range(400)] == tiny_weights.tokens


def test_quantised_gguf_is_dequantised(tmp_path, tiny_weights):
    path = write_gguf(tmp_path / "q8.gguf", tiny_weights, quantise_embedding=True)
    unembed = open_source(locate_model(str(path))).unembed()
    assert unembed.shape == tiny_weights.unembed.shape
    # Q8_0 keeps ~8 bits per weight: close to, not equal to, the float weights.
    assert 0 < np.abs(unembed - tiny_weights.unembed).max() < 0.05


@pytest.mark.parametrize("quantised", [True, False])
def test_gguf_embedding_rows_dequantise_as_the_whole_tensor_does(tmp_path, tiny_weights, quantised):
    path = write_gguf(tmp_path / "e.gguf", tiny_weights, quantise_embedding=quantised)
    source = open_source(locate_model(str(path)))
    whole, rows = source.embedding(), source.embedding_rows()
    assert rows.shape == whole.shape
    np.testing.assert_array_equal(rows.rows(0, whole.shape[0]), whole)
    np.testing.assert_array_equal(rows.rows(7, 19), whole[7:19])
    ids = np.array([3, 0, whole.shape[0] - 1, 3])
    np.testing.assert_array_equal(rows.take(ids), whole[ids])


def test_gguf_tensors_and_vocabulary_equal_the_gguf_packages_reader(tmp_path, tiny_weights):
    """The header is walked by neuron-tui itself; the gguf package's own reader is the reference."""
    import gguf

    path = write_gguf(tmp_path / "q8.gguf", tiny_weights, quantise_embedding=True)
    source = open_source(locate_model(str(path)))
    reader = gguf.GGUFReader(path, "r")
    for tensor in reader.tensors:
        data, kind = source._tensor_data(tensor.name)
        assert kind == tensor.tensor_type
        np.testing.assert_array_equal(data, tensor.data, err_msg=tensor.name)
    field = reader.fields["tokenizer.ggml.tokens"]
    assert source._header.arrays["tokenizer.ggml.tokens"] == [bytes(field.parts[i]) for i in field.data]


def test_a_gguf_cut_inside_its_tensor_data_is_one_clear_error(tmp_path, tiny_weights):
    path = write_gguf(tmp_path / "cut.gguf", tiny_weights)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    source = open_source(locate_model(str(path)))
    with pytest.raises(UserError, match="ends inside tensor"):
        for layer in range(source.info.n_layers):
            source.mlp_out(layer)
            source.mlp_in(layer)  # the last layer's input rows are where the file now ends
            source.mlp_norm(layer)
        source.unembed()


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_bridge_source_matches_hf_weights(fixture, request):
    import torch
    from transformers import AutoModelForCausalLM

    folder = request.getfixturevalue(fixture)
    source = open_source(locate_model(str(folder)))
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert source.info.n_layers == 2
    if fixture == "tiny_llama_dir":
        expected_out = hf.model.layers[1].mlp.down_proj.weight.T  # nn.Linear stores [out, in]
        expected_norm = hf.model.norm.weight
    else:
        expected_out = hf.transformer.h[1].mlp.c_proj.weight  # GPT-2's Conv1D stores [in, out]
        expected_norm = hf.transformer.ln_f.weight
    np.testing.assert_array_equal(source.mlp_out(1), expected_out.detach().numpy())
    np.testing.assert_array_equal(source.unembed(), hf.lm_head.weight.T.detach().numpy())
    np.testing.assert_array_equal(source.final_norm_weight(), expected_norm.detach().numpy())
    vocab = source.vocabulary()
    assert len(vocab) == source.info.d_vocab
    assert vocab.text(256) == " coming"


def test_orientation_check_transposes_and_rejects():
    array = np.zeros((4, 6))
    assert check_orientation("W_out", array, 6, 4).shape == (6, 4)
    assert check_orientation("W_out", array, 4, 6) is array
    with pytest.raises(ValueError):
        check_orientation("W_out", array, 5, 5)


def test_fingerprint_follows_content_not_name(tmp_path, tiny_gguf, tiny_weights):
    import dataclasses
    import shutil

    copy = tmp_path / "renamed.gguf"
    shutil.copy(tiny_gguf, copy)
    assert locate_model(str(copy)).fingerprint == locate_model(str(tiny_gguf)).fingerprint
    changed = tiny_weights.w_out[:]
    changed[0] = changed[0] * 2
    other = write_gguf(
        tmp_path / "other.gguf",
        dataclasses.replace(tiny_weights, w_out=changed),
    )
    assert locate_model(str(other)).fingerprint != locate_model(str(tiny_gguf)).fingerprint


def test_pickle_only_checkpoints_are_refused(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UserError, match="pickle"):
        locate_model(str(folder))


def test_unknown_model_name_is_a_user_error():
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        locate_model("no-such-org/no-such-model-xyz")


def test_broken_gguf_is_a_user_error(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(UserError, match="cannot read GGUF"):
        open_source(locate_model(str(broken)))


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_scan_of_bridge_loaded_models_equals_reference(fixture, request, tmp_path):
    """The whole path for checkpoints: TransformerBridge weights -> scan -> float64 reference."""
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import Projection, ScanSettings
    from tests.helpers.exactness import assert_layer_matches
    from tests.helpers.reference import reference_layer

    folder = request.getfixturevalue(fixture)
    projection = Projection(fold_final_norm=True, center_unembed=True, cosine=False)
    engine = NeuronEngine(EngineOptions(model=str(folder), device="cpu", cache_dir=tmp_path / "c"))
    settings = ScanSettings(top_k=6, projection=projection)
    source = open_source(locate_model(str(folder)))
    for layer in range(engine.info.n_layers):
        result = engine.layer(layer, settings)
        ref = reference_layer(source.mlp_out(layer), source.unembed(), source.final_norm(), projection, 6, 8)
        assert_layer_matches(result, ref)
