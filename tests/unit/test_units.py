"""Pure functions and plain objects, tested without a model, a terminal or Pilot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.data.dictionary import DictionaryInfo
from engine.data.layers import parse_layer_spec
from engine.data.neurons import LayerNeurons
from engine.data.null import NullBaseline
from engine.data.summary import STANDOUT_Z, summarise
from engine.errors import UserError
from engine.neuron_engine import EngineOptions
from engine.settings import DEFAULT_TOP_K, GURNEE, NEURONS, Projection, ScanSettings, Units
from engine.store.collection import Collection
from tests.helpers.results import random_result
from tui.filtering import Condition, FilterError, neuron_order, parse_filter
from tui.neuron_ref import NEURON_NAMES, NeuronRefError, UnitNames, parse_unit_ref
from tui.scan_plan import NULL_BASELINE, next_scan_target, should_abandon
from tui.state import RESULTS_KEPT, ExplorerState

NULL = NullBaseline(values=np.sort(np.random.default_rng(1).uniform(0.5, 1.5, 2048)))


# --- layer specs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("13", [13]),
        ("0-3", [0, 1, 2, 3]),
        ("5,1,1,3", [1, 3, 5]),
        ("all", list(range(30))),
        ("0-1, 29", [0, 1, 29]),
    ],
)
def test_layer_specs(spec, expected):
    assert parse_layer_spec(spec, 30) == expected


@pytest.mark.parametrize(
    ("spec", "message"), [("30", "out of range"), ("3-1", "cannot read"), ("x", "cannot read")]
)
def test_bad_layer_specs(spec, message):
    with pytest.raises(UserError, match=message):
        parse_layer_spec(spec, 30)


# --- settings and options ---------------------------------------------------------------------
def test_settings_are_validated_when_built_and_replaced():
    settings = ScanSettings()
    assert settings.top_k == DEFAULT_TOP_K
    with pytest.raises(UserError, match="top-k"):
        ScanSettings(top_k=0)
    with pytest.raises(UserError, match="dtype"):
        ScanSettings(dtype="float8")
    with pytest.raises(UserError, match="top-k"):
        dataclasses.replace(settings, top_k=-1)
    assert dataclasses.replace(settings, projection=GURNEE).projection.label == "fold+center+cosine"


def test_engine_messages_name_no_command_line_flags():
    for bad in (dict(device="tpu"), dict(loader="pickle"), dict(chunk_tokens=0)):
        with pytest.raises(UserError) as caught:
            EngineOptions(**bad)
        assert "--" not in str(caught.value)
    for bad in (dict(top_k=0), dict(token_top_n=0), dict(dtype="x")):
        with pytest.raises(UserError) as caught:
            ScanSettings(**bad)
        assert "--" not in str(caught.value)


def test_command_line_defaults_come_from_the_settings():
    from tui.cli import COMMANDS, EXPLORER, scan_settings

    for command in [EXPLORER, *COMMANDS.values()]:
        required = (["x"] if command.takes("texts") else []) + (
            ["--layer", "0"] if command.takes("layer") else []
        )
        args = command.parser().parse_args(required)
        assert scan_settings(args) == ScanSettings(), command.name


# --- derived neuron values --------------------------------------------------------------------
@pytest.mark.parametrize("cosine", [False, True])
def test_layer_neurons_derive_every_value_once(cosine):
    result = random_result(seed=3)
    neurons = LayerNeurons.derive(result, NULL, cosine)
    unit = result.max_dot if cosine else result.max_dot / result.norm
    np.testing.assert_allclose(neurons.per_unit, unit)
    np.testing.assert_allclose(neurons.null_z, (unit - NULL.values.mean()) / NULL.values.std())
    expected_pct = [100.0 * (NULL.values < u).mean() for u in unit]
    np.testing.assert_allclose(neurons.null_pct, expected_pct)
    for i in range(result.d_mlp):
        heavy = result.kurtosis[i] > 10
        expected = ("prediction" if result.skew[i] > 0 else "suppression") if heavy else ""
        assert neurons.classes[i] == expected
        stats = neurons.stats(i)
        assert (stats.klass, stats.max_dot, stats.null_z) == (expected, result.max_dot[i], neurons.null_z[i])
    assert LayerNeurons.derive(result, None, cosine).null_z is None


def test_summary_reads_the_derived_values():
    neurons = LayerNeurons.derive(random_result(seed=4), NULL, False)
    summary = summarise(neurons)
    assert summary.n_standout == int((neurons.null_z > STANDOUT_Z).sum())
    assert summary.n_prediction == int((neurons.classes == "prediction").sum())
    assert summary.p50 == float(np.quantile(neurons.result.max_dot, 0.5))


# --- filter and sort --------------------------------------------------------------------------
def test_parse_filter():
    assert parse_filter("") == []
    assert parse_filter("0.5") == [Condition("max_dot", ">=", 0.5)]
    assert parse_filter("kurtosis>10, class=prediction") == [
        Condition("kurtosis", ">", 10.0),
        Condition("class", "=", "prediction"),
    ]
    assert parse_filter("null-z >= 3 and class=none") == [
        Condition("null_z", ">=", 3.0),
        Condition("class", "=", ""),
    ]
    for bad, message in [
        ("colour=red", "unknown field"),
        ("kurtosis>x", "not a number"),
        ("class>1", "class takes"),
    ]:
        with pytest.raises(FilterError, match=message):
            parse_filter(bad)


def test_neuron_order_sorts_and_filters():
    neurons = LayerNeurons.derive(random_result(seed=5), NULL, False)
    r = neurons.result
    by_max = neuron_order(neurons, "max_dot", [])
    assert np.all(np.diff(r.max_dot[by_max]) <= 0)
    assert neuron_order(neurons, "neuron", []).tolist() == list(range(r.d_mlp))
    by_z = neuron_order(neurons, "null_z", [])
    assert np.all(np.diff(neurons.null_z[by_z]) <= 0)
    heavy = neuron_order(neurons, "kurtosis", parse_filter("kurtosis>10"))
    assert set(heavy.tolist()) == set(np.flatnonzero(r.kurtosis > 10).tolist())
    by_class = neuron_order(neurons, "class", [])
    ranks = [{"prediction": 0, "suppression": 1, "": 2}[neurons.classes[i]] for i in by_class]
    assert ranks == sorted(ranks)


# --- the background scan order ----------------------------------------------------------------
def test_scan_order_screen_first_then_null_then_nearest():
    order, done, null_ready = [], set(), False
    while (target := next_scan_target(6, 4, done, null_ready)) is not None:
        order.append(target)
        if target == NULL_BASELINE:
            null_ready = True
        else:
            done.add(target)
    assert order == [4, NULL_BASELINE, 3, 5, 2, 1, 0]


def test_scan_order_follows_the_user_and_abandons_background_layers():
    assert next_scan_target(6, 1, {4}, True) == 1
    assert next_scan_target(6, None, set(), False) == 0
    assert next_scan_target(3, 2, {0, 1, 2}, False) is None
    assert should_abandon(target=3, wanted=1, done={4})
    assert not should_abandon(target=3, wanted=3, done={4})
    assert not should_abandon(target=3, wanted=4, done={4})  # the user's layer is done: keep going


# --- explorer state ---------------------------------------------------------------------------
def test_state_layers_results_and_marks(tmp_path):
    state = ExplorerState(ScanSettings(), n_layers=10)
    assert state.start_layer(None) == (9, None)
    layer, warning = state.start_layer(12)
    assert layer == 9 and "out of range" in warning
    assert state.show(9) is None
    assert state.step(1) is None and state.step(-3) == 6
    for layer in range(RESULTS_KEPT + 2):
        state.keep(random_result(layer=layer))
    assert list(state.results) == list(range(2, RESULTS_KEPT + 2))
    state.toggle_mark(9, 3)  # no collection yet: nothing to keep marks in
    assert state.marked == set()
    state.collection = Collection.for_model("m", "f" * 64, tmp_path)
    state.toggle_mark(9, 3)
    state.toggle_mark(9, 5)
    state.toggle_mark(9, 3)
    assert state.marked == {5}
    assert state.show(2) is not None and state.marked == set(), "layer 2 has no marks"
    state.toggle_mark(2, 7)
    assert state.show(9) is None and state.marked == {5}, "marks stay with their layer"
    assert [(m.layer, m.neuron) for m in state.collection.items()] == [(2, 7), (9, 5)]
    assert list(state.results)[-1] == 2


def test_state_sort_filter_jump_and_projection():
    state = ExplorerState(ScanSettings())
    keys = [state.cycle_sort(None) for _ in range(14)]
    assert keys[-1] == "max_dot" and len(set(keys)) == 14
    assert {"lift", "neg_lift", "forms", "coherence_z", "diff_cos", "diff_jaccard"} <= set(keys)
    assert {"attr_top1", "attr_mean"} <= set(keys), "the corpus pass's attribution columns sort too"
    # With a layer on screen, the cycle offers only the columns it has: no lift before a corpus
    # pass, no diff without another checkpoint; the status says the sort in effect.
    state.null = NULL
    shown = state.neurons(random_result(layer=1))
    offered = [state.cycle_sort(shown) for _ in range(12)]
    assert offered[:6] == offered[6:] and offered[5] == "max_dot", "a cycle of the keys with values"
    assert not {"lift", "neg_lift", "diff_cos", "diff_jaccard", "forms"} & set(offered)
    state.sort_key = "lift"  # chosen on a layer that had evidence
    assert state.sort_by(shown) == "max_dot" and state.sort_label(shown) == "max-dot ↓"
    state.null = None
    state.conditions = parse_filter("0.5")
    state.jump_to(7)  # the filter stays: the screen clears it only if it hides neuron 7
    assert state.pending_neuron == 7 and [str(c) for c in state.conditions] == ["max_dot>=0.5"]
    state.keep(random_result(layer=1))
    state.null = NULL
    assert not state.switch_projection(Projection())
    assert state.switch_projection(GURNEE)
    assert state.generation == 1 and state.settings.projection == GURNEE
    assert not state.results and state.null is None


# --- a dictionary's features beside the neurons ------------------------------------------------
def _dictionary_info(layer: int, d_sae: int = 48) -> DictionaryInfo:
    hook = f"blocks.{layer}.hook_resid_post"
    return DictionaryInfo(
        f"layers.{layer}", layer, "sparsify", "sae", "topk", hook, hook, 32, d_sae, (layer,)
    )


def test_unit_references_name_features_and_neurons_whichever_kind_is_listed():
    dictionaries = {1: _dictionary_info(1), 3: _dictionary_info(3)}

    def parse(text: str, features: bool, layer: int | None = 1):
        return parse_unit_ref(text, layer, 4, 64, dictionaries, features)

    assert parse("L1/F5", False) == (1, 5, True) and parse("3/f47", False) == (3, 47, True)
    assert parse("F5", False) == (1, 5, True) and parse("5", True) == (1, 5, True)
    assert parse("3:7", True) == (3, 7, True), "without F or N: a unit of the kind listed"
    assert parse("L1/N5", True) == (1, 5, False) and parse("N7", True) == (1, 7, False)
    assert parse("2:7", False) == (2, 7, False) and parse("5", False) == (1, 5, False)
    for text, features, words in (
        ("L2/F5", False, "layer 2 has no dictionary: the dictionaries read layers 1, 3"),
        ("F48", True, "feature 48 is out of range: layers.1 at layer 1 has features 0-47"),
        ("L9/F1", True, "layer 9 is out of range"),
        ("F5", True, "name the layer too"),
    ):
        with pytest.raises(NeuronRefError, match=words):
            parse(text, features, None if text == "F5" else 1)
    with pytest.raises(NeuronRefError, match="--dictionary PATH"):
        parse_unit_ref("L1/F5", 1, 4, 64, {}, False)
    names = UnitNames({1: "layers.1"})
    assert (names.full(1, 5), names.compact(1, 5), names.in_layer(1, 5)) == (
        "L1/F5 (layers.1)",
        "L1/F5",
        "F5",
    )
    assert (NEURON_NAMES.full(1, 5), NEURON_NAMES.in_layer(1, 5), NEURON_NAMES.word) == (
        "L1/N5",
        "5",
        "neuron",
    )


def test_state_keeps_each_kind_apart_and_steps_through_the_dictionarys_layers(tmp_path):
    dictionary = Units("f" * 64, "set")
    state = ExplorerState(ScanSettings(units=dictionary), n_layers=6)
    state.dictionary_infos = {1: _dictionary_info(1), 4: _dictionary_info(4)}
    assert state.features and state.dictionary == dictionary and state.unit_layers() == [1, 4]
    assert state.start_layer(None) == (
        4,
        "layer 5 has no dictionary (the dictionaries read layers 1, 4): showing layer 4",
    )
    assert state.start_layer(2) == (1, state.start_layer(2)[1]) and state.nearest_unit_layer(3) == 4
    state.show(4)
    assert state.step(1) is None and state.step(-1) == 1 and state.step(-5) == 1
    state.keep(random_result(layer=4))
    state.collection = Collection.for_model("m", "f" * 64, tmp_path, dictionary=dictionary.digest)
    state.toggle_mark(4, 7)
    features = state.generation
    assert state.switch_units(NEURONS) and not state.switch_units(NEURONS)
    assert not state.features and state.unit_layers() == list(range(6)) and state.step(1) == 5
    assert not state.results and state.collection is None and state.marked == set(), "the neurons' own"
    assert state.held_of(features) is state.kinds[dictionary.digest], "a late result lands with its kind"
    assert state.switch_units(dictionary) and 4 in state.results and state.marked == {7}
    assert state.unit_label(4, 7) == "L4/F7 (layers.4)" and state.sort_label(None) == "max-dot ↓"
    assert state.switch_projection(GURNEE)
    assert not state.results and state.held_of(features) is None, "both kinds start again"
    assert len({held.generation for held in state.kinds.values()}) == 2


def test_scan_order_reads_only_the_layers_given():
    assert next_scan_target(6, 4, set(), True, layers=[1, 4]) == 4
    assert next_scan_target(6, 4, {4}, True, layers=[1, 4]) == 1
    assert next_scan_target(6, 4, {1, 4}, True, layers=[1, 4]) is None
