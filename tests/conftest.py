from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.models import random_weights, write_gguf, write_hf_gpt2, write_hf_llama
from tui.neuron_ref import use_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own cache and data directories, fixed seeds, and no animations."""
    monkeypatch.setenv("NEURON_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NEURON_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    use_model(None)  # how units are named is per process: an explorer of experts run before must not leak
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_weights():
    return random_weights()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_weights) -> Path:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", tiny_weights)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return write_hf_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return write_hf_gpt2(tmp_path_factory.mktemp("hf") / "tiny-gpt2")


@pytest.fixture(scope="session")
def transformers_bundled():
    """The bundled GGUF model as transformers' own GGUF loader builds it (float32, evaluation mode):
    a slow load, done once for the tests that read it and never change it (they share an xdist
    group, so one process)."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.sources.resolve import bundled_model_path

    path = bundled_model_path()
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def bundled_runner(tmp_path_factory):
    """An engine on the bundled model with its runnable model built (a slow load), for the tests
    that run the model: each opens its own engine beside this one (``NeuronEngine.beside``: its own
    cache, this model) and leaves the model as it found it (they share an xdist group, so one
    process)."""
    from engine.neuron_engine import EngineOptions, NeuronEngine

    engine = NeuronEngine(EngineOptions(device="cpu", cache_dir=tmp_path_factory.mktemp("bundled-runner")))
    engine.activation_model()
    return engine
