"""Ctrl-C during a scan: exit 130, finished layers stay cached, the next run completes them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np

from engine.settings import Projection
from tests.helpers.cli import ROOT, run_cli
from tests.helpers.models import random_weights, write_gguf
from tests.helpers.reference import reference_layer


def _as_from_a_shell() -> None:
    """Ctrl-C as a shell delivers it: default action, not blocked. A test runner's worker process
    may hold SIGINT ignored or blocked (after earlier in-process tests), and children inherit both."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_sigint_mid_scan_exits_130_and_keeps_the_cache(tmp_path):
    weights = random_weights(n_layers=4, d_model=128, d_mlp=1024, d_vocab=20000, seed=11)
    model = write_gguf(tmp_path / "medium.gguf", weights)
    args = [
        "scan",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
        "--chunk-tokens",
        "32",  # small blocks: layers take seconds each, so Ctrl-C lands mid-scan
        "--top-k",
        "3",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args, "--output", str(tmp_path / "x.jsonl")],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_shell,
    )
    for line in process.stderr:
        if line.startswith("layer 0:"):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in rest and "interrupted" in rest
    assert not (tmp_path / "x.jsonl").exists(), "no partial output file"

    again = run_cli(*args, "--output", str(tmp_path / "y.jsonl"))
    assert again.returncode == 0, again.stderr
    assert "layer 0: 1024 neurons from cache" in again.stderr
    records = [json.loads(line) for line in (tmp_path / "y.jsonl").read_text().splitlines()]
    for layer in range(4):
        rows = [r for r in records if r["layer"] == layer]
        ref = reference_layer(weights.w_out[layer], weights.unembed, None, Projection(), 3, 8)
        np.testing.assert_array_equal([[t["token_id"] for t in r["top"]] for r in rows], ref["top_ids"])
