from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``neuron-tui`` as a user would, in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_torchrun(
    *args: str, ranks: int = 2, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node RANKS --no-python neuron-tui ARGS``, one thread a rank."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    command = [str(bin_dir / "torchrun"), "--standalone", "--nproc-per-node", str(ranks), "--no-python"]
    return subprocess.run(
        [*command, str(bin_dir / "neuron-tui"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
