"""The disk cache: hits, misses, keys, damage and hostile entries."""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat

import numpy as np
import pytest

from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import Projection, ScanSettings
from engine.store.cache import ResultCache
from engine.store.products import LAYER


def _engine(model, tmp_path) -> NeuronEngine:
    return NeuronEngine(EngineOptions(model=str(model), device="cpu", cache_dir=tmp_path / "c"))


def test_miss_then_hit_without_loading_the_model(tiny_gguf, tmp_path):
    first = _engine(tiny_gguf, tmp_path)
    computed = first.layer(1, ScanSettings())
    assert first.source_loaded
    first.close()
    second = _engine(tiny_gguf, tmp_path)
    events = []
    cached = second.layer(1, ScanSettings(), listener=events.append)
    assert not second.source_loaded, "a cached layer must not load the model"
    assert second.info.n_layers == 3 and len(second.vocabulary) == 400
    assert not second.source_loaded
    assert [e.stage for e in events] == ["cached"]
    for name in ("top_ids", "top_dots", "max_dot", "kurtosis", "token_neurons"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(computed, name))


@pytest.mark.parametrize(
    "change",
    [
        {"top_k": 5},
        {"dtype": "bfloat16"},
        {"projection": Projection(fold_final_norm=True)},
        {"projection": Projection(center_unembed=True)},
        {"projection": Projection(cosine=True)},
        {"token_top_n": 4},
    ],
)
def test_every_setting_changes_the_key(tiny_gguf, tmp_path, change):
    engine = _engine(tiny_gguf, tmp_path)
    default = ScanSettings()
    engine.layer(0, default)
    other = ScanSettings(**change)
    assert engine.products.key(LAYER, 0, default) != engine.products.key(LAYER, 0, other)
    assert not engine.is_cached(0, other)
    assert engine.is_cached(0, default)


def test_layer_and_model_are_in_the_key(tiny_gguf, tmp_path):
    engine = _engine(tiny_gguf, tmp_path)
    assert engine.products.key(LAYER, 0, ScanSettings()) != engine.products.key(LAYER, 1, ScanSettings())
    assert engine.fingerprint in engine.products.key(LAYER, 0, ScanSettings())


def test_cache_directory_is_private(tmp_path):
    cache = ResultCache(tmp_path / "private")
    assert stat.S_IMODE(os.stat(tmp_path / "private").st_mode) == 0o700
    cache.close()


def test_damaged_value_is_detected_and_dropped(tmp_path):
    cache = ResultCache(tmp_path / "c")
    payload = os.urandom(100_000)  # large enough to live in its own file
    cache.set("k", payload)
    assert cache.get("k") == payload
    files = [
        os.path.join(root, name)
        for root, _, names in os.walk(tmp_path / "c")
        for name in names
        if name.endswith(".val")
    ]
    assert files
    with open(files[0], "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00garbage\x00")
    assert cache.get("k") is None
    assert not cache.contains("k")


def test_pickled_entry_is_never_unpickled(tmp_path):
    cache = ResultCache(tmp_path / "c")
    cache.set("k", b"x" * 10)
    cache.close()

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'k'", (pickle.dumps(Boom()),))
    db.commit()
    db.close()
    cache = ResultCache(tmp_path / "c")
    assert cache.get("k") is None
    assert not (tmp_path / "pwned").exists()


def test_no_cache_reads_and_writes_nothing(tiny_gguf, tmp_path):
    engine = NeuronEngine(
        EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c", use_cache=False)
    )
    engine.layer(0, ScanSettings())
    assert engine.cache_directory is None
    assert not (tmp_path / "c").exists()


def test_unusable_cache_directory_warns_and_runs_uncached(tiny_gguf, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    engine = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=blocker / "sub"))
    assert engine.cache_directory is None
    assert engine.warnings and "running without the cache" in engine.warnings[0]
    assert engine.layer(0, ScanSettings()).d_mlp == 96
