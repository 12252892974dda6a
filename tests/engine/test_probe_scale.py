"""The text probe ranks neurons by activation relative to each neuron's own scale: the corpus
quantile from the evidence's histogram when every probed layer has evidence, else the text's own
RMS. Both against brute force on tiny random models: the quantile by walking the bins one at a time
(and against the exact quantile of the corpus's activations), the ranking and the relative values by
running the plain Hugging Face model and sorting every neuron."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.activations.documents import Corpus
from engine.activations.job import ActivationJob
from engine.activations.state import ACT_OCTAVES, ACT_TOP, ACT_TOP_POWER
from engine.data.neuron_scale import SCALE_FLOOR, SCALE_QUANTILE, histogram_quantile
from engine.data.score_histogram import bin_edges
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tests.helpers.activation_reference import reference_evidence

PER_SIGN = ACT_OCTAVES * 8
EDGES = bin_edges(ACT_TOP, ACT_OCTAVES)[PER_SIGN:]  # |activation| bin edges, float64
TEXT = "hello there, said she; and he said hello"


def reference_bins(values: np.ndarray) -> np.ndarray:
    """Each float32 value's signed histogram bin, from its binary exponent and first three
    mantissa bits computed in float64 (frexp), clamped to the window (2^-20 to 2^12)."""
    magnitude = np.abs(values.astype(np.float32).astype(np.float64))
    fraction, exponent = np.frexp(magnitude)  # magnitude = fraction * 2^exponent, fraction in [0.5, 1)
    step = (exponent - 1 + 127 - (127 + ACT_TOP_POWER - ACT_OCTAVES)) * 8 + np.floor((2 * fraction - 1) * 8)
    step = np.where(magnitude > 0, step, 0).clip(0, PER_SIGN - 1).astype(np.int64)
    return np.where(np.signbit(values), PER_SIGN - 1 - step, PER_SIGN + step)


def reference_histogram(acts: np.ndarray) -> np.ndarray:
    """[units, 2 * PER_SIGN] counts of ``acts`` [positions, units]."""
    bins = reference_bins(acts)
    return np.stack([np.bincount(bins[:, u], minlength=2 * PER_SIGN) for u in range(acts.shape[1])])


def walked_quantile(counts: np.ndarray, quantile: float = SCALE_QUANTILE) -> np.ndarray:
    """The quantile of |value|, one neuron and one bin at a time: fold the signs, walk up the
    magnitudes until the count reaches quantile * total, interpolate inside that bin."""
    out = []
    for row in counts:
        magnitude = [int(row[PER_SIGN + k]) + int(row[PER_SIGN - 1 - k]) for k in range(PER_SIGN)]
        target, seen, value = quantile * sum(magnitude), 0, 0.0
        for k, count in enumerate(magnitude):
            if count and seen + count >= target:
                value = EDGES[k] + (target - seen) / count * (EDGES[k + 1] - EDGES[k])
                break
            seen += count
        out.append(value)
    return np.array(out)


def floored(scales: np.ndarray) -> np.ndarray:
    return np.maximum(scales, max(SCALE_FLOOR * np.median(scales), np.finfo(np.float32).tiny))


def reference_text_scale(acts: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Position by position: each neuron's RMS over the text's other unmarked positions, at least
    the median over neurons of their RMS over all unmarked positions."""
    kept = [q for q in range(len(acts)) if not marked[q]] or list(range(len(acts)))
    floor = np.median(np.sqrt(np.mean(acts[kept] ** 2, axis=0)))
    scale = np.empty_like(acts)
    for p in range(len(acts)):
        others = [q for q in kept if q != p]
        rms = np.sqrt(np.mean(acts[others] ** 2, axis=0)) if others else np.zeros(acts.shape[1])
        scale[p] = np.maximum(rms, floor)
    return scale


def test_the_histogram_quantile_equals_a_walk_over_the_bins_and_holds_the_exact_quantile():
    rng = np.random.default_rng(3)
    acts = np.concatenate(
        [
            rng.standard_normal((997, 4)) * [1.0, 30.0, 1e-3, 5000.0],  # 5000: past the window's top
            np.where(rng.random((997, 1)) < 0.005, 4.0, 1e-7),  # silent but for 0.5% of positions
            np.zeros((997, 1)),
            -np.abs(rng.standard_normal((997, 1))),  # one sign only
        ],
        axis=1,
    ).astype(np.float32)
    counts = reference_histogram(acts)
    got = histogram_quantile(counts, ACT_TOP)
    np.testing.assert_allclose(got, walked_quantile(counts), rtol=1e-12, atol=0)
    exact = np.quantile(np.abs(acts.astype(np.float64)), SCALE_QUANTILE, axis=0, method="inverted_cdf")
    for unit in range(acts.shape[1]):
        k = min(max(int(np.searchsorted(EDGES, exact[unit], side="right")) - 1, 0), PER_SIGN - 1)
        assert EDGES[k] <= got[unit] <= EDGES[k + 1], unit  # the bin that holds the exact quantile
    assert got[5] <= EDGES[1]  # all zeros: inside the bin next to zero
    assert got[4] <= EDGES[1]  # the silent neuron's 99th percentile is its noise, not its firing


def _engine(model_dir, tmp_path) -> NeuronEngine:
    return NeuronEngine(EngineOptions(model=str(model_dir), device="cpu", cache_dir=tmp_path / "cache"))


def _text_activations(engine: NeuronEngine, layers: list[int], text: str) -> dict[int, np.ndarray]:
    """Every neuron's activation on every token of ``text``, from the plain Hugging Face model."""
    bridge, tokenizer, _ = engine.activation_model()
    model = bridge.original_model
    found: dict[int, np.ndarray] = {}
    hooks = [
        model.model.layers[layer].mlp.down_proj.register_forward_hook(
            lambda m, i, o, layer=layer: found.__setitem__(layer, i[0][0].double().numpy())
        )
        for layer in layers
    ]
    with torch.no_grad():
        model(torch.tensor([tokenizer(text)["input_ids"]]))
    for hook in hooks:
        hook.remove()
    return found


def _assert_ranked(firing, acts: dict[int, np.ndarray], scales: dict[int, np.ndarray], top: int) -> None:
    for index, layer in enumerate(firing.layers):
        relative = acts[layer] / scales[layer]
        order = np.argsort(-np.abs(relative), axis=1, kind="stable")[:, :top]  # ties: lower neuron
        np.testing.assert_array_equal(firing.neurons[:, index, :], order)
        np.testing.assert_allclose(
            firing.relative[:, index, :], np.take_along_axis(relative, order, 1), rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(
            firing.activations[:, index, :], np.take_along_axis(acts[layer], order, 1), rtol=1e-5, atol=1e-6
        )


def test_the_probe_ranks_by_each_neurons_corpus_quantile(tiny_llama_dir, tmp_path):
    engine = _engine(tiny_llama_dir, tmp_path)
    rng = np.random.default_rng(5)
    letters = list("abcdefghij klmnop,.\n")
    documents = tuple("".join(rng.choice(letters, size=180)) for _ in range(6))
    corpus = Corpus("letters", documents)
    settings, scan = (
        ActivationSettings(context=32, examples=4, lift_positions=8, batch_tokens=64),
        ScanSettings(),
    )
    evidence = ActivationJob(engine, [0, 1], corpus, settings, scan).run()
    firing, _ = engine.probe(
        TEXT, [0, 1], 6, scan, corpus_hash=corpus.content_hash, corpus_name="letters", activation=settings
    )
    assert "99th percentile of |activation| on letters" in firing.scale
    bridge, tokenizer, _ = engine.activation_model()
    scales = {}
    for layer in (0, 1):
        counts = evidence[layer].act_hist
        scales[layer] = floored(walked_quantile(counts))
        # The histogram's quantile against the exact quantile of every corpus activation: one bin.
        corpus_acts = reference_evidence(bridge.original_model, tokenizer, documents, layer, 32, 20, 8, 8)[
            "acts"
        ]
        exact = np.quantile(np.abs(corpus_acts), SCALE_QUANTILE, axis=0, method="inverted_cdf")
        np.testing.assert_allclose(walked_quantile(counts), exact, rtol=1 / 8)  # bins: 1/8 of 2^e wide
    _assert_ranked(firing, _text_activations(engine, [0, 1], TEXT), scales, 6)


def test_without_corpus_evidence_the_probe_ranks_by_the_texts_rms(tiny_llama_dir, tmp_path):
    engine = _engine(tiny_llama_dir, tmp_path)
    firing, _ = engine.probe(TEXT, [0, 1], 5, ScanSettings())
    assert (
        "RMS on the rest of this text" in firing.scale and "corpus evidence for 0 of 2 layers" in firing.scale
    )
    acts = _text_activations(engine, [0, 1], TEXT)
    assert firing.marked[0] and not firing.marked[1:].any()
    scales = {layer: reference_text_scale(a, firing.marked) for layer, a in acts.items()}
    _assert_ranked(firing, acts, scales, 5)
    # A neuron that fires on one token only ranks by how far it stands above the layer's typical
    # level there, not at a common ceiling: the relative values are graded.
    assert len(set(np.round(np.abs(firing.relative[1:, 0, 0]), 6))) == len(firing.token_ids) - 1


def test_one_layer_without_evidence_sends_every_layer_to_the_texts_scale(tiny_llama_dir, tmp_path):
    engine = _engine(tiny_llama_dir, tmp_path)
    corpus = Corpus("letters", ("abc def ghi, jkl mno pqr. " * 12,))
    settings, scan = (
        ActivationSettings(context=32, examples=4, lift_positions=8, batch_tokens=64),
        ScanSettings(),
    )
    ActivationJob(engine, [1], corpus, settings, scan).run()
    kept = {"corpus_hash": corpus.content_hash, "corpus_name": "letters", "activation": settings}
    one, _ = engine.probe(TEXT, [1], 3, scan, **kept)
    both, _ = engine.probe(TEXT, [0, 1], 3, scan, **kept)
    assert "on letters" in one.scale
    assert "RMS on the rest of this text" in both.scale and "corpus evidence for 1 of 2 layers" in both.scale


@pytest.mark.parametrize("text", ["", "x", "xy"])
def test_a_text_of_few_tokens_still_probes(tiny_llama_dir, tmp_path, text):
    engine = _engine(tiny_llama_dir, tmp_path)
    firing, _ = engine.probe(text, [0], 3, ScanSettings())
    assert firing.relative.shape == firing.neurons.shape == (len(firing.token_ids), 1, 3)
    assert np.isfinite(firing.relative).all()
    if text:
        acts = _text_activations(engine, [0], text)
        _assert_ranked(firing, acts, {0: reference_text_scale(acts[0], firing.marked)}, 3)


@pytest.mark.slow
@pytest.mark.xdist_group("bundled-runner")
def test_on_the_bundled_model_the_always_large_neurons_no_longer_top_every_token(bundled_runner, tmp_path):
    """Ranked raw, L28/N1095 (+28 to +45 on every token) topped nearly every token of this sentence;
    by each neuron's own scale the first neuron follows the token."""
    engine = NeuronEngine.beside(bundled_runner, EngineOptions(device="cpu", cache_dir=tmp_path / "cache"))
    firing, _ = engine.probe("Mary told John that she would bring her book", [28, 29], 3, ScanSettings())
    firsts = []
    for position in np.flatnonzero(~firing.marked):
        hits = [
            (abs(firing.relative[position, index, 0]), layer, int(firing.neurons[position, index, 0]))
            for index, layer in enumerate(firing.layers)
        ]
        firsts.append(max(hits, key=lambda hit: (hit[0], -hit[1], -hit[2]))[1:])
    assert len(firsts) == 8 and len(set(firsts)) >= 6
    assert (28, 1095) not in firsts and (29, 1267) not in firsts
