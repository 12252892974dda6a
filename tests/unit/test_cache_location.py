"""One cache from anywhere: --cache-dir, then $NEURON_TUI_CACHE_DIR, then a source checkout's
.cache/, then $XDG_CACHE_HOME/neuron-tui or ~/.cache/neuron-tui."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import engine.store.location as location
from tests.helpers.cli import ROOT


def test_the_order_of_cache_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURON_TUI_CACHE_DIR", str(tmp_path / "env"))
    assert location.default_cache_dir()[0] == tmp_path / "env"
    monkeypatch.delenv("NEURON_TUI_CACHE_DIR")
    assert location.default_cache_dir()[0] == ROOT / ".cache", "this test runs from a source checkout"
    monkeypatch.setattr(location, "source_checkout", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert location.default_cache_dir()[0] == tmp_path / "xdg" / "neuron-tui"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert location.default_cache_dir()[0] == tmp_path / "home" / ".cache" / "neuron-tui"


def _installed_scan(tiny_gguf: Path, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """`neuron-tui scan` as an installed copy runs it (no source checkout), from ``cwd``."""
    code = (
        "import sys, engine.store.location as l\n"
        "l.source_checkout = lambda: None\n"
        "from tui.cli import main\n"
        f"sys.exit(main(['scan', '--model', {str(tiny_gguf)!r}, '--device', 'cpu', '--layers', '0', "
        "'-o', 'x.csv']))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}
    env.pop("NEURON_TUI_CACHE_DIR", None)
    env.pop("XDG_CACHE_HOME", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_runs_from_two_folders_share_one_cache(tiny_gguf, tmp_path):
    home = tmp_path / "home"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = _installed_scan(tiny_gguf, tmp_path / "a", home)
    second = _installed_scan(tiny_gguf, tmp_path / "b", home)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "computed" in first.stderr and "from cache" in second.stderr
    assert (home / ".cache" / "neuron-tui").is_dir()
    assert not (tmp_path / "a" / ".cache").exists() and not (tmp_path / "b" / ".cache").exists()


def test_help_says_which_cache_is_in_use(tmp_path):
    mine = str(tmp_path / "mine")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURON_TUI_CACHE_DIR": mine, "COLUMNS": "500"}
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--help"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert f"here: {mine}, from $NEURON_TUI_CACHE_DIR" in done.stdout
