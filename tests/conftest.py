from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.models import random_weights, write_gguf, write_hf_gpt2, write_hf_llama

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own cache and data directories, fixed seeds, and no animations."""
    monkeypatch.setenv("NEURON_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NEURON_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
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
