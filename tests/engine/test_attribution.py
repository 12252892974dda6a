"""Which neurons made each token: the door's attribution and ablation against float64 computations
by hand on the plain transformers model (tests.helpers.attribution_reference), on tiny random
checkpoints of three architectures (a gated MLP with RMSNorm, GPT-2's LayerNorm, Gemma's
(1 + weight) RMSNorm with tied embeddings)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.activations.ablation import ablation_batches
from engine.activations.attribution import best_columns
from engine.errors import UserError
from engine.neuron_engine import EngineOptions, NeuronEngine
from tests.helpers.attribution_reference import float64_model, reference_ablation, reference_attribution
from tests.helpers.models import write_hf_checkpoint

TEXT = "hello there, she said it was fine"


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    return write_hf_checkpoint(tmp_path_factory.mktemp("hf") / "tiny-gemma", "gemma")


def _engine(model_dir, tmp_path, **options) -> NeuronEngine:
    return NeuronEngine(
        EngineOptions(model=str(model_dir), device="cpu", cache_dir=tmp_path / "cache", **options)
    )


def _ranked(values: np.ndarray, count: int, descending: bool) -> np.ndarray:
    """Column indices of each row's ``count`` largest (or smallest) values, ties to the lower index."""
    return np.argsort(-values if descending else values, axis=1, kind="stable")[:, :count]


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_gpt2_dir", "tiny_gemma_dir"])
def test_attribution_equals_float64_by_hand_and_the_parts_add_up_to_the_logit(model, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    engine = _engine(model_dir, tmp_path)
    layers = list(range(engine.info.n_layers))
    got = engine.attribute(TEXT, layers, top=5)
    ref = reference_attribution(float64_model(model_dir), got.token_ids.tolist())
    positions = np.arange(got.n_positions)
    np.testing.assert_array_equal(got.target_ids, ref.targets)  # the argmax of the logits
    np.testing.assert_allclose(got.logits, ref.logits[positions, ref.targets], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.scales, ref.scale, rtol=1e-6)
    every = np.concatenate([ref.dla[layer] for layer in layers], axis=1)  # [positions, all neurons]
    d_mlp = ref.dla[0].shape[1]
    np.testing.assert_allclose(got.neuron_total, every.sum(axis=1), rtol=1e-6, atol=1e-7)
    # Every part of the final residual through the fixed norm, plus the biases, is the logit.
    whole = got.neuron_total + ref.others + ref.constant
    np.testing.assert_allclose(whole, got.logits, rtol=1e-6, atol=1e-6)
    for against, dla, layer, neuron, activation in (
        (False, got.top_dla, got.top_layer, got.top_neuron, got.top_activation),
        (True, got.low_dla, got.low_layer, got.low_neuron, got.low_activation),
    ):
        order = _ranked(every, 5, descending=not against)
        np.testing.assert_array_equal(layer, order // d_mlp)
        np.testing.assert_array_equal(neuron, order % d_mlp)
        np.testing.assert_allclose(dla, np.take_along_axis(every, order, 1), rtol=1e-6, atol=1e-8)
        acts = np.concatenate([ref.activations[layer] for layer in layers], axis=1)
        np.testing.assert_allclose(activation, np.take_along_axis(acts, order, 1), rtol=1e-5, atol=1e-6)
        first = got.neurons(3, against=against)[0]
        assert first.share == pytest.approx(first.dla / got.neuron_total[3])
    assert (np.diff(got.top_dla, axis=1) <= 0).all() and (np.diff(got.low_dla, axis=1) >= 0).all()


def test_a_target_given_and_a_subset_of_layers(tiny_llama_dir, tmp_path):
    engine = _engine(tiny_llama_dir, tmp_path)
    got = engine.attribute(TEXT, [1], top=3, target="e")
    assert got.targeted and (got.target_ids == ord("e")).all()  # the tiny vocabulary's byte tokens first
    ref = reference_attribution(float64_model(tiny_llama_dir), got.token_ids.tolist(), int(got.target_ids[0]))
    np.testing.assert_allclose(got.neuron_total, ref.dla[1].sum(axis=1), rtol=1e-6, atol=1e-7)
    assert (got.top_layer == 1).all()
    np.testing.assert_allclose(got.logits, ref.logits[:, int(got.target_ids[0])], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_ablation_equals_a_recomputed_forward_with_the_neuron_zeroed(model, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    engine = _engine(model_dir, tmp_path)
    layer, neuron = 0, 5
    # Small batches: runs of a few positions, and a position alone near the end.
    got = engine.ablate(TEXT, layer, neuron, batch_tokens=40)
    reference = float64_model(model_dir)
    ids = got.token_ids.tolist()
    expected = [
        reference_ablation(reference, ids, layer, neuron, p, int(got.target_ids[p])) for p in range(len(ids))
    ]
    np.testing.assert_allclose(got.delta_logit, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(got.delta_logit).max() > 1e-4  # the neuron does something on this text
    ref = reference_attribution(reference, ids)
    np.testing.assert_allclose(got.direct, -ref.dla[layer][:, neuron], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.activation, ref.activations[layer][:, neuron], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.indirect, got.delta_logit - got.direct)
    # One position per forward pass or many: the same deltas.
    wide = engine.ablate(TEXT, layer, neuron, batch_tokens=4096)
    np.testing.assert_allclose(wide.delta_logit, got.delta_logit, rtol=1e-5, atol=1e-7)


def test_the_lists_for_and_against_keep_to_their_side(tiny_llama_dir, tmp_path):
    """With more neurons asked for than push either way, "for" holds only positive attributions and
    "against" only negative ones: neither list is filled up from the other side."""
    engine = _engine(tiny_llama_dir, tmp_path)
    found = engine.attribute(TEXT, [0, 1], top=10_000)
    n = 2 * engine.info.d_mlp
    for position in range(len(found.token_ids)):
        pro, con = found.neurons(position), found.neurons(position, against=True)
        assert all(entry.dla > 0 for entry in pro) and all(entry.dla < 0 for entry in con)
        assert 0 < len(pro) + len(con) <= n


@pytest.mark.parametrize("distinct", [1_000_000, 7, 2])
def test_the_kept_columns_are_a_stable_sort_s_even_among_equal_values(distinct):
    """topk's shortcut keeps what a stable sort would keep, in its order, ties to the lower column:
    random rows with no ties, some, and mostly ties (as zero activations give)."""
    import torch

    generator = np.random.default_rng(distinct)
    values = torch.from_numpy(generator.integers(0, distinct, (64, 300)).astype(np.float64) / 3)
    values[5] = 0.0  # one row of equal values
    for width in (1, 10, 300):
        for descending in (True, False):
            found = best_columns(values, width, descending).numpy()
            np.testing.assert_array_equal(found, _ranked(values.numpy(), width, descending))


def test_ablation_runs_cover_every_position_once_within_the_batch():
    for positions, batch in ((1, 1), (7, 2), (40, 64), (256, 2048)):
        runs = ablation_batches(positions, batch)
        assert [p for run in runs for p in run] == list(range(positions))
        assert all(len(run) == 1 or (len(run) + 1) * run.stop <= batch for run in runs)


def test_the_streamed_source_and_the_bridge_attribute_alike(tiny_llama_dir, tmp_path):
    streamed = _engine(tiny_llama_dir, tmp_path / "a", loader="stream").attribute(TEXT, [0, 1], top=4)
    bridged = _engine(tiny_llama_dir, tmp_path / "b", loader="bridge").attribute(TEXT, [0, 1], top=4)
    np.testing.assert_array_equal(streamed.top_neuron, bridged.top_neuron)
    np.testing.assert_array_equal(streamed.top_dla, bridged.top_dla)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e: e.attribute("   ", [0], 3), "the text is empty"),
        (lambda e: e.attribute(TEXT, [0], 3, target="hello"), "not one"),
        (lambda e: e.attribute("x" * 80, [0], 3), "more than the model's context of 64"),
        (lambda e: e.attribute(TEXT, [9], 3), "layer 9 is out of range"),
        (lambda e: e.ablate(TEXT, 1, 64), "neuron 64 is out of range"),
        (lambda e: e.ablate(TEXT, 2, 0), "layer 2 is out of range"),
    ],
)
def test_bad_input_is_refused_in_one_line(call, message, tiny_llama_dir, tmp_path):
    with pytest.raises(UserError, match=message) as raised:
        call(_engine(tiny_llama_dir, tmp_path))
    assert "\n" not in str(raised.value)
