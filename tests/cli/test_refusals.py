"""Bad input is refused before any work, with one line and exit 2; results describe themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ScanSettings
from tests.helpers.cli import ROOT, run_cli


def _one_line_exit_2(done: subprocess.CompletedProcess, *expected: str) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _scan(model, tmp_path, *extra):
    return run_cli(
        "scan", "--model", str(model), "--device", "cpu", "--cache-dir", str(tmp_path / "c"), *extra
    )


def test_top_k_above_the_vocabulary_names_the_limit(tiny_gguf, tiny_llama_dir, tmp_path):
    _one_line_exit_2(_scan(tiny_gguf, tmp_path, "--top-k", "401"), "top-k 401", "at most 400")
    _one_line_exit_2(_scan(tiny_llama_dir, tmp_path, "--top-k", "100000000"), "at most 300")
    assert (
        _scan(
            tiny_gguf, tmp_path, "--top-k", "400", "--layers", "0", "-o", str(tmp_path / "x.csv")
        ).returncode
        == 0
    )
    # Known from the cache now: the same refusal without reading the model file.
    _one_line_exit_2(_scan(tiny_gguf, tmp_path, "--top-k", "60000"), "at most 400")


@pytest.mark.parametrize("spec", ["", " ", "1,,2", "2-", "-1", "a-b"])
def test_empty_or_malformed_layer_specs(tiny_gguf, tmp_path, spec):
    _one_line_exit_2(_scan(tiny_gguf, tmp_path, "--layers", spec), "layer spec")


def test_unwritable_outputs_are_named_before_the_scan(tiny_gguf, tmp_path):
    targets = ["/proc/1/x.csv", str(tmp_path / "missing" / "x.csv")]
    if Path("/sys").is_dir():
        targets.append("/sys/x.csv")
    for target in targets:
        line = _one_line_exit_2(_scan(tiny_gguf, tmp_path, "--output", target), f"cannot write {target}")
        assert "internal error" not in line
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").glob("*.val")), "no scan ran"


def test_broken_config_names_the_file_and_field(tiny_llama_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_llama_dir.iterdir():
        (broken / item.name).symlink_to(item)
    (broken / "config.json").unlink()
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "hidden_size": "abc"}))
    _one_line_exit_2(_scan(broken, tmp_path), "config.json", "'hidden_size'", "'abc'")
    (broken / "config.json").write_text("{not json")
    _one_line_exit_2(_scan(broken, tmp_path), "config.json")


def test_damaged_gguf_files_are_refused_at_once(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    _one_line_exit_2(_scan(empty, tmp_path), "empty.gguf", "is empty")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(
        b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + (5).to_bytes(8, "little")
    )
    _one_line_exit_2(_scan(cut, tmp_path), "ends inside its header")


def test_explicit_cuda_is_refused_even_when_everything_is_cached(tiny_gguf, tmp_path):
    assert _scan(tiny_gguf, tmp_path, "--layers", "1", "-o", str(tmp_path / "x.jsonl")).returncode == 0
    args = [
        "scan",
        "--model",
        str(tiny_gguf),
        "--device",
        "cuda",
        "--cache-dir",
        str(tmp_path / "c"),
        "--layers",
        "1",
    ]
    _one_line_exit_2(run_cli(*args), "CUDA is not available")


def test_warm_and_cold_runs_write_the_same_bytes(tiny_gguf, tmp_path):
    args = ["scan", "--model", str(tiny_gguf), "--device", "auto", "--cache-dir", str(tmp_path / "c")]
    for name in ("cold.jsonl", "warm.jsonl", "cold.csv", "warm.csv"):
        done = run_cli(*args, "--output", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "cold.jsonl").read_bytes() == (tmp_path / "warm.jsonl").read_bytes()
    assert (tmp_path / "cold.csv").read_bytes() == (tmp_path / "warm.csv").read_bytes()
    record = json.loads((tmp_path / "warm.jsonl").read_text().splitlines()[0])
    assert record["device"] == "cpu" and "device" not in record["settings"]


def test_the_explorer_without_a_terminal_exits_at_once(tiny_gguf, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--model", str(tiny_gguf), "--cache-dir", str(tmp_path / "c")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _one_line_exit_2(done, "needs a terminal", "neuron-tui scan")
    assert not (tmp_path / "c").exists(), "nothing was opened"


def test_cpu_only_torch_beside_a_gpu_is_said_once(tiny_gguf, tmp_path, monkeypatch, caplog):
    import engine.runtime.device

    monkeypatch.setattr(engine.runtime.device, "nvidia_gpu_present", lambda: True)
    engine = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="auto", cache_dir=tmp_path / "c"))
    with caplog.at_level("WARNING"):
        engine.layer(0, ScanSettings())
        engine.layer(1, ScanSettings())
    heard = [r.getMessage() for r in caplog.records if "CPU-only" in r.getMessage()]
    assert len(heard) == 1 and "CPU-only build" in heard[0] and "TORCH_SPEC=torch" in heard[0]
    assert engine.warnings.count(heard[0]) == 1


def test_engine_check_refuses_before_loading(tiny_gguf, tmp_path):
    engine = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c"))
    with pytest.raises(UserError, match="at most 400"):
        engine.check(ScanSettings(top_k=401))
    engine.check(ScanSettings(top_k=400))
    assert not engine.source_loaded
