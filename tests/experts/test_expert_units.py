"""The small pieces: a layer's flat neurons and its experts, the references a user types, and the
probe's scale of a neuron that runs only where its expert is routed."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.experts import SHARED, LayerExperts, record_fields, unit_ref
from engine.data.neuron_scale import text_scale
from engine.errors import UserError
from tui.neuron_ref import NeuronRefError, parse_neuron_ref, use_model

EXPERTS = LayerExperts.from_sizes([(0, 8), (1, 8), (2, 8), (SHARED, 12)])


def test_flat_neurons_and_their_experts_round_trip():
    for flat in range(EXPERTS.width):
        expert, local = EXPERTS.locate(flat)
        assert EXPERTS.flat(expert, local) == flat
    assert unit_ref(3, 17, EXPERTS) == "L3/E2/N1" and unit_ref(3, 30, EXPERTS) == "L3/S/N6"
    assert record_fields(30, EXPERTS) == {"expert": "shared", "neuron": 6}
    assert record_fields(30, None) == {"neuron": 30}
    assert LayerExperts.from_json(EXPERTS.to_json()) == EXPERTS
    with pytest.raises(UserError, match="expert E1 has neurons 0-7"):
        EXPERTS.flat(1, 8)


def test_typed_references_in_a_model_with_experts():
    use_model([None, EXPERTS])
    try:
        assert parse_neuron_ref("L1/E2/N3", None, 2, 24) == (1, 19)
        assert parse_neuron_ref("1/e2/3", None, 2, 24) == (1, 19)
        assert parse_neuron_ref("S/N4", 1, 2, 24) == (1, 28)
        assert parse_neuron_ref("5", 1, 2, 24, current_expert=1) == (1, 13)  # within the listed expert
        assert parse_neuron_ref("L0/N23", 1, 2, 24) == (0, 23)
        for text, words in [
            ("L1/N5", "routes through experts"),
            ("L0/E1/N2", "layer 0 has no experts"),
            ("L1/E7/N0", "no expert 7"),
            ("L1/E1/N9", "has neurons 0-7"),
        ]:
            with pytest.raises(NeuronRefError, match=words):
                parse_neuron_ref(text, 1, 2, 24)
    finally:
        use_model(None)


def test_a_probe_scale_counts_only_the_positions_an_expert_ran():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((12, 3))
    ran = rng.random((12, 3)) < 0.4
    ran[:, 0] = True  # a neuron of the shared expert: every position
    values[~ran] = 0.0
    marked = np.zeros(12, bool)
    marked[0] = True
    scale = text_scale(values, marked, ran)
    for position in range(1, 12):
        for neuron in range(3):
            others = [p for p in range(1, 12) if p != position and ran[p, neuron]]
            if others:
                rms = np.sqrt(np.mean(values[others, neuron] ** 2))
                assert scale[position, neuron] >= rms - 1e-12
                if rms > scale.min():
                    assert scale[position, neuron] == pytest.approx(max(rms, scale.min()))
    np.testing.assert_array_equal(text_scale(values, marked), text_scale(values, marked, np.ones_like(ran)))
