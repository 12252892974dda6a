"""Outputs that are not files: a device or a named pipe is written in place as JSONL, streamed,
with no temporary file beside it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from tests.helpers.cli import run_cli


def _scan(tiny_gguf: Path, tmp_path: Path, output: str, *extra: str):
    common = ("--model", str(tiny_gguf), "--device", "cpu", "--cache-dir", str(tmp_path / "c"))
    return run_cli("scan", *common, "--layers", "0-1", "--output", output, *extra)


def test_dev_null_is_an_output(tiny_gguf, tmp_path):
    before = set(os.listdir("/dev"))
    done = _scan(tiny_gguf, tmp_path, "/dev/null")
    assert done.returncode == 0, done.stderr
    assert "wrote 192 neurons from 2 layer(s) to /dev/null" in done.stderr
    assert set(os.listdir("/dev")) - before == set()  # no temporary file beside it


def test_a_named_pipe_gets_jsonl_as_it_is_written(tiny_gguf, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []

    def read() -> None:
        with open(fifo, encoding="utf-8") as pipe:  # waits for the writer to open it
            received.extend(pipe)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = _scan(tiny_gguf, tmp_path, str(fifo))
    finally:
        if reader.is_alive() and not received:  # the writer never came: let the reader go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in received]
    assert [(r["layer"], r["neuron"]) for r in records] == [(layer, n) for layer in (0, 1) for n in range(96)]
    assert all(r["settings"]["model"] == "tiny-llama" for r in records)
    assert sorted(os.listdir(tmp_path)) == ["c", "pipe"]  # nothing written beside the pipe
    # The same records as a .jsonl file holds.
    as_file = _scan(tiny_gguf, tmp_path, str(tmp_path / "x.jsonl"))
    assert as_file.returncode == 0 and (tmp_path / "x.jsonl").read_text() == "".join(received)


def test_dev_stdout_carries_the_records_of_every_command_that_writes_rows(tiny_gguf, tmp_path):
    common = ("--model", str(tiny_gguf), "--cache-dir", str(tmp_path / "c"), "--layers", "0")
    layers = run_cli("layers", *common, "--output", "/dev/stdout")
    assert layers.returncode == 0, layers.stderr
    (row,) = [json.loads(line) for line in layers.stdout.splitlines()]
    assert row["layer"] == 0 and row["settings"]["model"] == "tiny-llama"
    tokens = run_cli("tokens", " coming", *common, "--top", "2", "--exact-only", "--output", "/dev/stdout")
    assert tokens.returncode == 0, tokens.stderr
    assert [json.loads(line)["query"] for line in tokens.stdout.splitlines()] == [" coming"] * 2
