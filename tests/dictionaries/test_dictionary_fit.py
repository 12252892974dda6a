"""``dictionary fit``: sparsify's trainer on the model's activations, stopped and resumed."""

from __future__ import annotations

import numpy as np
import pytest

from engine.activations.documents import Corpus
from engine.data.progress import FitProgress
from engine.errors import ScanCancelled
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import DictionaryFitSettings
from tests.engine.test_activations import random_documents
from tests.helpers.dictionaries import load_sparsify

SETTINGS = DictionaryFitSettings(layer=1, kind="transcoder", latents=48, k=4, context=16, batch_size=2)


def _fit(model, tmp_path, data, monkeypatch, stop_after: int | None = None):
    monkeypatch.setenv("NEURON_TUI_DATA_DIR", str(data))
    engine = NeuronEngine(EngineOptions(model=str(model), device="cpu", cache_dir=tmp_path / "cache"))
    heard: list[FitProgress] = []
    corpus = Corpus("random", random_documents(4, count=8))
    try:
        return engine.fit_dictionary(
            corpus, SETTINGS, heard.append, lambda: stop_after is not None and len(heard) > stop_after
        ), heard
    finally:
        engine.close()


def _weights(folder):
    coder = load_sparsify(folder / SETTINGS.hookpoint)
    return {name: value.detach().numpy() for name, value in coder.state_dict().items()}


def test_a_stopped_fit_resumes_where_it_stopped_and_ends_as_an_unstopped_one(
    tiny_llama_dir, tmp_path, monkeypatch
):
    whole, heard = _fit(tiny_llama_dir, tmp_path, tmp_path / "whole", monkeypatch)
    assert heard[0].start == 0 and heard[-1].done == heard[-1].total > 2
    with pytest.raises(ScanCancelled):
        _fit(tiny_llama_dir, tmp_path, tmp_path / "stopped", monkeypatch, stop_after=2)
    resumed, heard = _fit(tiny_llama_dir, tmp_path, tmp_path / "stopped", monkeypatch)
    assert heard[0].start == 2 and heard[-1].done == heard[-1].total
    expected, got = _weights(whole), _weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    again, heard = _fit(tiny_llama_dir, tmp_path, tmp_path / "stopped", monkeypatch)
    assert again == resumed and heard == []  # found at once


def test_a_fitted_dictionary_opens_as_fitted_and_reads_the_mlp(tiny_llama_dir, tmp_path, monkeypatch):
    folder, _ = _fit(tiny_llama_dir, tmp_path, tmp_path / "data", monkeypatch)
    engine = NeuronEngine(
        EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "cache")
    )
    units = engine.open_dictionary(["fitted"])
    (info,) = engine.dictionary_infos(units).values()
    assert (info.layer, info.kind, info.hook_in, info.hook_out, info.d_sae) == (
        1,
        "transcoder",
        "blocks.1.mlp.hook_in",
        "blocks.1.hook_mlp_out",
        48,
    )
    engine.close()
