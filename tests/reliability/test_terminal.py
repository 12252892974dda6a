"""A closed terminal never leaves a process behind; an unopenable model leaves the terminal clean.

The explorer runs in a real pseudo-terminal; the terminal goes away at random moments (after q,
without q, by SIGHUP, mid-scan), and every time the process must end, the cache stay whole.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from engine.settings import Projection
from tests.helpers.cli import run_cli
from tests.helpers.models import random_weights, write_gguf
from tests.helpers.reference import reference_layer
from tests.helpers.terminal import Terminal

pytestmark = pytest.mark.slow

ALTERNATE_SCREEN = b"\x1b[?1049h"
TRIES = 20


def _leftovers(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if "pgrep" not in line]


def test_closing_the_terminal_at_random_moments_leaves_no_process(tmp_path):
    weights = random_weights(n_layers=3, d_model=64, d_mlp=512, d_vocab=6000, seed=31)
    model = write_gguf(tmp_path / "closing.gguf", weights)
    cache = tmp_path / "closing-cache"
    args = ["--model", str(model), "--device", "cpu", "--cache-dir", str(cache), "--chunk-tokens", "32"]
    rng = random.Random(11)
    ends = {}
    slowest = 0.0
    for attempt in range(TRIES):
        way = ["q then close", "close", "SIGHUP mid-scan", "close mid-scan"][attempt % 4]
        if "mid-scan" in way:  # earlier attempts may have cached every layer: then nothing computes
            shutil.rmtree(cache, ignore_errors=True)
        terminal = Terminal(args, size=rng.choice([(80, 24), (120, 40)]))
        try:
            if way == "q then close":
                terminal.wait_for(b"Layer")
                time.sleep(rng.uniform(0, 1.0))
                terminal.type(b"q")
                time.sleep(rng.uniform(0, 0.5))
            elif way == "close":
                time.sleep(rng.uniform(0, 2.5))
            else:
                terminal.wait_for(b"computing")  # the cache was emptied: a scan always runs
                time.sleep(rng.uniform(0, 0.5))
                if way == "SIGHUP mid-scan":
                    terminal.signal(signal.SIGHUP)
            closed = time.monotonic()
            terminal.hang_up()
            code = terminal.wait()
            slowest = max(slowest, time.monotonic() - closed)
        finally:
            terminal.kill()
        ends.setdefault(way, []).append(code)
        assert code in (0, 129, 130, 143, -signal.SIGHUP), f"{way}: exit {code}"
        assert not _leftovers(str(cache)), f"{way}: a process was left behind"
    print(f"exit codes by way of closing: {ends}; slowest end after the close: {slowest:.2f} s")
    # The cache holds whole layers only: a scan on it equals the float64 reference.
    out = tmp_path / "after.jsonl"
    done = run_cli("scan", *args[:6], "--top-k", "5", "--output", str(out))
    assert done.returncode == 0, done.stderr
    import json

    records = [json.loads(line) for line in out.read_text().splitlines()]
    for layer in range(3):
        ref = reference_layer(weights.w_out[layer], weights.unembed, None, Projection(), 5, 8)
        ids = [[t["token_id"] for t in r["top"]] for r in records if r["layer"] == layer]
        np.testing.assert_array_equal(ids, ref["top_ids"])


@pytest.mark.parametrize("broken", ["zero-byte gguf", "config that is not JSON"])
def test_an_unopenable_model_leaves_the_terminal_clean(tmp_path, tiny_llama_dir, broken):
    if broken == "zero-byte gguf":
        model = tmp_path / "empty.gguf"
        model.write_bytes(b"")
    else:
        model = tmp_path / "broken-dir"
        model.mkdir()
        for item in tiny_llama_dir.iterdir():
            (model / item.name).symlink_to(item)
        (model / "config.json").unlink()
        (model / "config.json").write_text("{not json")
    terminal = Terminal(["--model", str(model), "--cache-dir", str(tmp_path / "c")])
    try:
        code = terminal.wait()
        terminal._reader.join()
    finally:
        terminal.kill()
    text = bytes(terminal.output).decode(errors="replace")
    assert code == 2, text
    assert ALTERNATE_SCREEN not in terminal.output, "the terminal was never taken over"
    assert "neuron-tui: error:" in text and "Traceback" not in text
