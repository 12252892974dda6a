"""The reliability battery: kills, corruption, concurrency, full or read-only disks, hang-ups,
hostile data, tiny terminals and out-of-memory."""

from __future__ import annotations

import csv
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.settings import Projection, ScanSettings
from tests.helpers.app import make_app, settle, wait_for
from tests.helpers.cli import ROOT, run_cli
from tests.helpers.models import random_weights, write_gguf
from tests.helpers.reference import reference_layer

pytestmark = pytest.mark.slow

N_LAYERS, D_MODEL, D_MLP, D_VOCAB = 4, 128, 1024, 12000


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """Big enough that a scan takes a second or two, so signals land mid-scan."""
    weights = random_weights(n_layers=N_LAYERS, d_model=D_MODEL, d_mlp=D_MLP, d_vocab=D_VOCAB, seed=21)
    return weights, write_gguf(tmp_path_factory.mktemp("medium") / "medium.gguf", weights)


@pytest.fixture(scope="module")
def medium_reference(medium):
    weights, _ = medium
    return {
        layer: reference_layer(weights.w_out[layer], weights.unembed, None, Projection(), 5, 8)
        for layer in range(N_LAYERS)
    }


def _scan_args(model: Path, cache: Path, out: Path) -> list[str]:
    return [
        "scan",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
        "--top-k",
        "5",
        "--chunk-tokens",
        "256",
        "--output",
        str(out),
    ]


def _popen(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs
    )


def assert_output_matches(out: Path, reference: dict) -> None:
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == N_LAYERS * D_MLP
    for layer, ref in reference.items():
        rows = [r for r in records if r["layer"] == layer]
        np.testing.assert_array_equal([[t["token_id"] for t in r["top"]] for r in rows], ref["top_ids"])
        np.testing.assert_allclose([[t["dot"] for t in r["top"]] for r in rows], ref["top_dots"], rtol=1e-12)
        np.testing.assert_allclose([r["kurtosis"] for r in rows], ref["kurtosis"], rtol=1e-5)


def test_sigkill_at_random_moments_never_leaves_a_bad_layer(medium, medium_reference, tmp_path):
    _, model = medium
    cache = tmp_path / "cache"
    rng = random.Random(7)
    kills = int(os.environ.get("NEURON_TUI_KILLS", "20"))
    for attempt in range(kills):
        process = _popen(
            _scan_args(model, cache, tmp_path / f"killed{attempt}.jsonl"),
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        # The output is renamed into place whole, so a kill can land after it (while the process
        # ends) but never leaves part of one: an output that exists is the complete, right one.
        if (tmp_path / f"killed{attempt}.jsonl").exists():
            assert_output_matches(tmp_path / f"killed{attempt}.jsonl", medium_reference)
    done = run_cli(*_scan_args(model, cache, tmp_path / "final.jsonl"))
    assert done.returncode == 0, done.stderr
    assert_output_matches(tmp_path / "final.jsonl", medium_reference)


def test_random_bytes_over_the_cache_are_detected_and_recomputed(medium, medium_reference, tmp_path):
    _, model = medium
    cache = tmp_path / "cache"
    assert run_cli(*_scan_args(model, cache, tmp_path / "first.jsonl")).returncode == 0
    rng = random.Random(3)
    files = [path for path in cache.rglob("*") if path.is_file()]
    assert any(path.suffix == ".val" for path in files)
    for path in files:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            for _ in range(8):
                handle.seek(rng.randrange(max(size, 1)))
                handle.write(os.urandom(rng.randint(1, 64)))
    done = run_cli(*_scan_args(model, cache, tmp_path / "second.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_output_matches(tmp_path / "second.jsonl", medium_reference)
    # And once more: whatever the damaged run could cache is good.
    again = run_cli(*_scan_args(model, cache, tmp_path / "third.jsonl"))
    assert again.returncode == 0
    assert_output_matches(tmp_path / "third.jsonl", medium_reference)


def test_two_concurrent_scans_on_one_fresh_cache(medium, medium_reference, tmp_path):
    _, model = medium
    cache = tmp_path / "cache"
    processes = [
        _popen(
            _scan_args(model, cache, tmp_path / f"c{i}.jsonl"),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        for i in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    for i in range(2):
        assert_output_matches(tmp_path / f"c{i}.jsonl", medium_reference)
    assert (os.stat(cache).st_mode & 0o777) == 0o700


async def test_explorer_and_scan_share_a_cache(medium, medium_reference, tmp_path):
    _, model = medium
    cache = tmp_path / "cache"
    scan = _popen(
        _scan_args(model, cache, tmp_path / "shared.jsonl"),
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    app = make_app(
        model, cache, settings=__import__("engine.settings").settings.ScanSettings(top_k=5), chunk_tokens=256
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.scan_complete)
        np.testing.assert_array_equal(
            app.main.layer_view.result.top_ids[:, :5], medium_reference[N_LAYERS - 1]["top_ids"]
        )
    assert scan.wait(timeout=300) == 0
    assert_output_matches(tmp_path / "shared.jsonl", medium_reference)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_full_disk_runs_uncached_with_a_warning(medium, medium_reference, tmp_path):
    """A file-size limit stands in for a full disk: every write past 200 kB fails."""
    _, model = medium
    cache = tmp_path / "cache"
    out = tmp_path / "full.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", *_scan_args(model, cache, Path("-"))],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out.write_text(done.stdout)
    assert_output_matches(out, medium_reference)
    warnings = [line for line in done.stderr.splitlines() if "cache" in line and "warning" in line]
    assert 1 <= len(warnings) <= 2, done.stderr
    again = run_cli(*_scan_args(model, cache, tmp_path / "after.jsonl"))
    assert again.returncode == 0
    assert_output_matches(tmp_path / "after.jsonl", medium_reference)


def test_read_only_cache_location_runs_uncached(medium, tmp_path):
    _, model = medium
    done = run_cli(
        "scan",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--layers",
        "0",
        "--cache-dir",
        "/proc/neuron-tui-cache",
        "--output",
        str(tmp_path / "x.jsonl"),
    )
    assert done.returncode == 0, done.stderr
    assert "running without the cache" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "x.jsonl").exists()


def _explorer_in_tmux(
    model: Path, cache: Path, session: str, term: str = "xterm-256color", extra_env: str = ""
) -> int:
    command = (
        f"cd {ROOT} && {extra_env} TERM={term} PYTHONPATH={ROOT} {sys.executable} -m tui.cli "
        f"--model {model} --device cpu --cache-dir {cache} --top-k 5 --chunk-tokens 64; "
        f"echo EXIT=$? > {cache.parent / (session + '.exit')}"
    )
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True)
    while True:
        found = subprocess.run(
            ["pgrep", "-f", f"tui.cli --model {model}"], capture_output=True, text=True
        ).stdout.split()
        # The tmux server and the shell carry the same command line: pick the Python process.
        pythons = [int(pid) for pid in found if Path(f"/proc/{pid}/comm").read_text().startswith("python")]
        if pythons:
            return pythons[0]
        time.sleep(0.05)


def _until(condition, step: float = 0.05) -> None:
    """Wait for a state, however long the machine takes; pytest-timeout ends a real hang."""
    while not condition():
        time.sleep(step)


def _pane(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


@pytest.mark.skipif(
    not __import__("shutil").which("tmux"), reason="tmux is needed to give the explorer a real terminal"
)
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGHUP, 129), (signal.SIGINT, 130)], ids=["SIGHUP", "SIGINT"]
)
def test_hang_up_or_interrupt_mid_scan_exits_cleanly(medium, medium_reference, tmp_path, signum, code):
    _, model = medium
    cache = tmp_path / "cache"
    session = f"ntui{os.getpid()}{signum}"
    try:
        pid = _explorer_in_tmux(model, cache, session)
        _until(lambda: "computing" in _pane(session))
        os.kill(pid, signum)
        exit_file = tmp_path / f"{session}.exit"
        _until(exit_file.exists)
        assert exit_file.read_text().strip() == f"EXIT={code}"
        assert "Traceback" not in _pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    done = run_cli(*_scan_args(model, cache, tmp_path / "after.jsonl"))
    assert done.returncode == 0, done.stderr
    assert_output_matches(tmp_path / "after.jsonl", medium_reference)


@pytest.mark.skipif(
    not __import__("shutil").which("tmux"), reason="tmux is needed to give the explorer a real terminal"
)
def test_dumb_terminal_without_colour(tiny_gguf, tmp_path):
    session = f"ntuidumb{os.getpid()}"
    cache = tmp_path / "cache"
    try:
        _explorer_in_tmux(tiny_gguf, cache, session, term="dumb", extra_env="NO_COLOR=1")
        _until(lambda: "Layer 2 / 2" in _pane(session))
        subprocess.run(["tmux", "send-keys", "-t", session, "]", "[", "j", "space", "q"])
        _until((tmp_path / f"{session}.exit").exists)
        assert (tmp_path / f"{session}.exit").read_text().strip() == "EXIT=0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


async def test_resizing_down_to_40x12_and_back(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for size in [(80, 24), (40, 12), (20, 6), (40, 12), (120, 40)]:
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
            await pilot.press("j", "]", "[")
        await pilot.press("enter")
        await pilot.resize_terminal(40, 12)
        await pilot.pause(0.1)
        await pilot.press("escape")
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.1)
        assert app.is_running and "Layer" in str(app.query_one("#status-text").render())


def test_hostile_tokens_stay_intact_in_exports(tiny_gguf, tmp_path):
    hostile = ["[/]", "[bold]x", "\x1b[31m", "a\nb", "nul\x00", "=cmd()", "<0xE2><0x80>"]
    jsonl, csv_path = tmp_path / "x.jsonl", tmp_path / "x.csv"
    base = [
        "scan",
        "--model",
        str(tiny_gguf),
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
        "--top-k",
        "400",
        "--layers",
        "0",
    ]
    assert run_cli(*base, "--output", str(jsonl)).returncode == 0
    assert run_cli(*base, "--output", str(csv_path)).returncode == 0
    first = json.loads(jsonl.read_text().splitlines()[0])
    texts = [t["token"] for t in first["top"]]
    for token in hostile:
        assert token in texts
    rows = list(csv.reader(csv_path.open(newline="", encoding="utf-8"), strict=True))
    cells = set(rows[1])
    for token in hostile:
        expected = "'" + token if token.startswith(("=", "+", "-", "@")) else token
        assert expected in cells, token


def test_out_of_memory_shrinks_the_block_and_retries(tiny_gguf, tiny_weights, tmp_path, monkeypatch):
    import torch

    import engine.scan.layer_scan as scan_module
    from engine.neuron_engine import EngineOptions, NeuronEngine

    real = scan_module.scan_layer
    calls = []

    def flaky(*args, chunk_tokens=None, **kwargs):
        calls.append(chunk_tokens)
        if len(calls) < 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, chunk_tokens=chunk_tokens, **kwargs)

    monkeypatch.setattr(scan_module, "scan_layer", flaky)
    engine = NeuronEngine(
        EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c", chunk_tokens=400)
    )
    result = engine.layer(1, ScanSettings())
    assert calls == [400, 200, 100]
    assert engine.shrunk_chunks == [200, 100]
    ref = reference_layer(tiny_weights.w_out[1], tiny_weights.unembed, None, Projection(), 10, 8)
    np.testing.assert_array_equal(result.top_ids[:, :10], ref["top_ids"])


def test_model_too_big_for_the_device_says_so(tiny_gguf, tmp_path, monkeypatch):
    import torch

    import engine.scan.projection as projection_module
    from engine.errors import UserError
    from engine.neuron_engine import EngineOptions, NeuronEngine

    def no_room(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(projection_module, "ProjectedUnembed", no_room)
    engine = NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c"))
    with pytest.raises(UserError, match="too big for cpu"):
        engine.layer(0, ScanSettings())
