"""``neuron-tui dictionary fit`` as a user runs it: Ctrl+C stops it between steps, the same command
resumes it, a finished fit is found at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.helpers.cli import ROOT


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args], env=env, stderr=subprocess.PIPE, text=True, bufsize=1
    )


def test_ctrl_c_stops_a_fit_between_steps_and_the_same_command_resumes_it(tiny_llama_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"word{i % 37} and more text" for i in range(3000)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURON_TUI_DATA_DIR": str(tmp_path / "data")}
    args = [
        "dictionary",
        "fit",
        "--model",
        str(tiny_llama_dir),
        "--cache-dir",
        str(tmp_path / "c"),
        "--layer",
        "1",
    ]
    args += ["--corpus", str(corpus), "--context", "16", "--batch-size", "2", "--latents", "48", "--k", "4"]
    args += ["--max-tokens", "8000"]  # 250 steps: a loaded machine cannot finish them before the stop
    fit = _start(args, env)
    assert fit.stderr is not None
    said = []
    for line in fit.stderr:  # the first steps are fitted: now stop it
        said.append(line)
        if line.startswith("step "):
            fit.send_signal(signal.SIGINT)
            break
    said += fit.stderr.readlines()
    assert fit.wait() == 130, "".join(said)
    stopped = next(line for line in said if line.startswith("stopped after step"))
    step = int(stopped.split()[3].rstrip(","))
    resumed = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step} of" in resumed.stderr
    again = subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr.startswith("fitted already: "), again.stderr
