"""Dictionaries written by SAELens and circuit-tracer themselves, with their own encode and decode
outputs (``expected.npz``), made once per test session in a reference environment of their own
(tests/reference_env: they need TransformerLens 3 and transformers 4.57, which cannot live beside
this project's TransformerLens 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

HERE = Path(__file__).resolve().parent.parent / "reference_env"
MAIN_VENV = Path(sys.prefix)
REFERENCE_VENV = MAIN_VENV.parent / ".venv-reference"


def reference_python() -> Path:
    """The reference environment's python, built (or checked unchanged) first, one process at a time."""
    with FileLock(str(MAIN_VENV.parent / ".venv-reference.lock")):
        built = subprocess.run(
            ["bash", str(HERE / "build.sh"), str(REFERENCE_VENV), str(MAIN_VENV)],
            capture_output=True,
            text=True,
        )
    assert built.returncode == 0, f"the reference environment did not build:\n{built.stderr[-3000:]}"
    return REFERENCE_VENV / "bin" / "python"


@pytest.fixture(scope="session")
def library_dictionaries(tmp_path_factory) -> Path:
    """OUT/saelens/<name>/, OUT/circuit_tracer/<name>/, OUT/sparsify/<name>/: each library's own
    files and expected.npz (x, acts, recon and their float64 versions)."""
    out = tmp_path_factory.mktemp("library-dictionaries")
    written = subprocess.run(
        [str(reference_python()), str(HERE / "write_dictionaries.py"), str(out)],
        capture_output=True,
        text=True,
    )
    assert written.returncode == 0, (
        f"the libraries did not write their dictionaries:\n{written.stderr[-3000:]}"
    )
    return out
