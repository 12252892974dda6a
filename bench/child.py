"""Run one neuron-tui command in a process of its own and read its peak resident memory.

As a module (``python -m bench.child ARGS``) it runs the command in this process and reports its
peak RSS on stderr; ``run_child`` and ``peak_kib`` are the parent's side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_kib() -> int:
    """VmHWM: this process's own high-water mark (ru_maxrss would include the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_env() -> dict:
    # Users' interpreters cache bytecode; measuring start-up without it would time the compiler.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(ROOT)}


def run_child(args: list[str]) -> tuple[float, str]:
    """Run ``python ARGS`` from the checkout: (seconds, its stderr); a failure raises."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=child_env())
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed, done.stderr


def peak_kib(stderr: str) -> int:
    """The peak RSS a ``bench.child`` run reported."""
    return int(stderr.rsplit("peak_rss_kib=", 1)[1].split()[0])


if __name__ == "__main__":
    from tui.cli import main

    code = main(sys.argv[1:])
    print(f"peak_rss_kib={peak_rss_kib()}", file=sys.stderr)
    sys.exit(code)
