"""The corpus pass's attribution columns (attr_top1, attr_mean per pole, the layer's dominance)
against brute force: every window run alone through the plain transformers model in float64
(tests.helpers.attribution_reference), every number counted from its definition in
engine.data.evidence."""

from __future__ import annotations

import numpy as np
import pytest

from engine.activations import forward_pass
from engine.activations.corpus import Corpus
from engine.activations.job import ActivationJob
from engine.activations.windows import tokenize_corpus
from engine.settings import ActivationSettings, ScanSettings
from tests.engine.test_activations import _engine, random_documents
from tests.helpers.attribution_reference import float64_model, reference_attribution

SETTINGS = ActivationSettings(context=20, examples=4, lift_positions=8, batch_tokens=60)
SCAN = ScanSettings(top_k=12)


def brute_force(model_dir, engine, corpus: Corpus, layers: list[int]) -> dict[int, dict]:
    """Per layer: top1 share, mean attribution per pole, the dominance share, over every window."""
    _, tokenizer, _ = engine.activation_model()
    tokenized = tokenize_corpus(corpus, lambda t: tokenizer(t)["input_ids"], SETTINGS.context, None)
    model = float64_model(model_dir)
    dla = {layer: [] for layer in layers}
    acts = {layer: [] for layer in layers}
    for start, stop in tokenized.windows:
        ref = reference_attribution(model, tokenized.token_ids[start:stop].tolist())
        for layer in layers:
            dla[layer].append(ref.dla[layer])
            acts[layer].append(ref.activations[layer])
    found = {}
    for layer in layers:
        d, a = np.concatenate(dla[layer]), np.concatenate(acts[layer])
        best = d.max(axis=1)
        tops = np.argmax(d, axis=1)[best > 0]
        positive_total = np.clip(d, 0, None).sum(axis=1)

        def mean(where: np.ndarray, values: np.ndarray = d) -> np.ndarray:
            counted = where.sum(axis=0)
            return np.where(counted > 0, (values * where).sum(axis=0) / np.maximum(counted, 1), np.nan)

        found[layer] = {
            "top1": np.bincount(tops, minlength=d.shape[1]) / d.shape[0],
            "pos": mean(a > 0),
            "neg": mean(a < 0),
            "dominant": float(((positive_total > 0) & (best >= 0.5 * positive_total)).mean()),
        }
    return found


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_attribution_columns_equal_brute_force(model, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    engine = _engine(model_dir, tmp_path)
    corpus = Corpus("random", random_documents(5, count=5))
    results = ActivationJob(engine, [0, 1], corpus, SETTINGS, SCAN).run()
    expected = brute_force(model_dir, engine, corpus, [0, 1])
    for layer in (0, 1):
        got, ref = results[layer], expected[layer]
        np.testing.assert_allclose(got.attr_top1, ref["top1"], atol=1.5 / got.n_positions)  # one near-tie
        assert np.abs(got.attr_top1 - ref["top1"]).sum() <= 2 / got.n_positions
        np.testing.assert_allclose(got.positive.attr_mean, ref["pos"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.negative.attr_mean, ref["neg"], rtol=1e-4, atol=1e-6)
        assert got.attr_dominant == pytest.approx(ref["dominant"], abs=1.5 / got.n_positions)
        assert 0 < got.attr_top1.sum() <= 1 and got.attr_top1.max() > 0


def test_the_readout_first_gives_the_bytes_of_holding_the_layers(tiny_llama_dir, tmp_path, monkeypatch):
    """A batch that holds its layers' activations until the final norm and one that runs to the
    final norm alone first (too many layers to hold) give the same evidence, byte for byte."""
    corpus = Corpus("random", random_documents(6, count=4))
    held = ActivationJob(_engine(tiny_llama_dir, tmp_path / "held"), [0, 1], corpus, SETTINGS, SCAN).run()
    monkeypatch.setattr(forward_pass, "HOLD_BYTES", 0)
    first = ActivationJob(_engine(tiny_llama_dir, tmp_path / "first"), [0, 1], corpus, SETTINGS, SCAN).run()
    for layer in (0, 1):
        assert first[layer].to_bytes() == held[layer].to_bytes()
