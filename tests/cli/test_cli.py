"""`neuron-tui scan` as scripts use it: formats, settings, progress and every bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.helpers.cli import run_cli
from tests.helpers.reference import reference_layer


def _scan(tiny_gguf, tmp_path, *extra: str):
    return run_cli(
        "scan", "--model", str(tiny_gguf), "--device", "cpu", "--cache-dir", str(tmp_path / "c"), *extra
    )


def test_jsonl_records_equal_the_reference(tiny_gguf, tiny_weights, tmp_path):
    out = tmp_path / "x.jsonl"
    done = _scan(tiny_gguf, tmp_path, "--layers", "0,2", "--top-k", "4", "--output", str(out))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * 96
    assert {
        "model",
        "layer",
        "neuron",
        "max_dot",
        "top",
        "promote",
        "suppress",
        "kurtosis",
        "skew",
        "class",
        "null_z",
        "null_pct",
    } <= set(records[0])
    for layer in (0, 2):
        ref = reference_layer(
            tiny_weights.w_out[layer],
            tiny_weights.unembed,
            None,
            __import__("engine.settings").settings.Projection(),
            4,
            8,
        )
        rows = [r for r in records if r["layer"] == layer]
        assert [r["neuron"] for r in rows] == list(range(96))
        ids = np.array([[t["token_id"] for t in r["top"]] for r in rows])
        dots = np.array([[t["dot"] for t in r["top"]] for r in rows])
        np.testing.assert_array_equal(ids, ref["top_ids"])
        np.testing.assert_allclose(dots, ref["top_dots"], rtol=1e-12)
        np.testing.assert_allclose([r["max_dot"] for r in rows], ref["max_dot"], rtol=1e-12)
        # The input side: each input row against the embedding, from the definition in float64.
        gamma = tiny_weights.mlp_norm[layer].astype(np.float64)
        embed = tiny_weights.unembed.T.astype(np.float64)  # the tiny GGUF's token_embd
        embed = embed / np.linalg.norm(embed, axis=1, keepdims=True)
        for name, rows_of in (("gate", tiny_weights.w_gate), ("up", tiny_weights.w_up)):
            row = rows_of[layer].astype(np.float64) * gamma
            cos = (row / np.linalg.norm(row, axis=1, keepdims=True)) @ embed.T
            best = np.argsort(-cos, axis=1, kind="stable")[:, :4]
            got = np.array([[t["token_id"] for t in r["input"][name]["plus"]] for r in rows])
            np.testing.assert_array_equal(got, best)
            got_cos = np.array([[t["cos"] for t in r["input"][name]["plus"]] for r in rows])
            np.testing.assert_allclose(got_cos, np.take_along_axis(cos, best, 1), rtol=1e-9)
    assert {"forms", "form_share", "coherence", "coherence_z", "supp_forms", "io_class"} <= set(records[0])
    assert {"cos_gate_out", "cos_up_out", "cos_gate_up"} <= set(records[0])
    settings = records[0]["settings"]
    assert settings["top_k"] == 4 and settings["dtype"] == "float32" and settings["projection"] == "raw"
    assert len(settings["fingerprint"]) == 64
    assert "layer 0" in done.stderr and "layer 2" in done.stderr  # a line per layer when not a terminal


def test_stdout_is_the_default_and_tokens_are_exact(tiny_gguf, tmp_path):
    done = _scan(tiny_gguf, tmp_path, "--layers", "1", "--top-k", "400")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.splitlines()[0])
    texts = {t["token"] for t in first["top"]}
    assert {" coming", "[/]", "\x1b[31m", "a\nb", "nul\x00", "=cmd()", "<0xE2><0x80>"} <= texts


def test_json_document_has_settings_and_neurons(tiny_gguf, tmp_path):
    out = tmp_path / "x.json"
    assert _scan(tiny_gguf, tmp_path, "--layers", "1", "--output", str(out), "--cosine").returncode == 0
    document = json.loads(out.read_text())
    assert document["settings"]["cosine"] is True and document["settings"]["projection"] == "cosine"
    assert len(document["neurons"]) == 96 and len(document["neurons"][0]["top"]) == 10


def test_csv_columns_and_formula_cells(tiny_gguf, tmp_path):
    out = tmp_path / "x.csv"
    assert _scan(tiny_gguf, tmp_path, "--layers", "1", "--top-k", "400", "--output", str(out)).returncode == 0
    rows = list(csv.reader(out.open(newline="")))
    assert rows[0][:7] == ["model", "layer", "neuron", "max_dot", "token_1", "token_id_1", "dot_1"]
    assert len(rows) == 97
    cells = set(rows[1])
    assert "'=cmd()" in cells and "'+1" in cells and "'-2" in cells and "'@SUM" in cells
    assert "=cmd()" not in cells


def test_second_scan_reads_the_cache(tiny_gguf, tmp_path):
    first = _scan(tiny_gguf, tmp_path, "--layers", "all", "--output", str(tmp_path / "a.jsonl"))
    second = _scan(tiny_gguf, tmp_path, "--layers", "all", "--output", str(tmp_path / "b.jsonl"))
    assert first.returncode == second.returncode == 0
    assert "computed" in first.stderr and "from cache" in second.stderr and "computed" not in second.stderr
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_scan_says_it_computes_the_input_side_of_cached_layers(tiny_gguf, tmp_path):
    """After the explorer (or `layers`) computed every layer, scan still computes the input side:
    it says so, layer by layer, and says "from cache" only of what it did not compute."""
    layers = run_cli("layers", "--model", str(tiny_gguf), "--cache-dir", str(tmp_path / "c"), "-o", "-")
    assert layers.returncode == 0, layers.stderr
    scan = _scan(tiny_gguf, tmp_path, "--output", str(tmp_path / "x.jsonl"))
    assert scan.returncode == 0, scan.stderr
    told = [line for line in scan.stderr.splitlines() if line.startswith("layer ")]
    assert len(told) == 3 and "computing the input side" in scan.stderr, scan.stderr
    for layer, line in enumerate(told):
        assert line.startswith(f"layer {layer}: 96 neurons: scores cached, input side computed in ")
        assert line.endswith(f"({layer + 1}/3)") and "from cache" not in line
    again = _scan(tiny_gguf, tmp_path, "--output", str(tmp_path / "y.jsonl"))
    assert again.stderr.count("from cache") == 3 and "input side" not in again.stderr, again.stderr
    assert (tmp_path / "y.jsonl").read_bytes() == (tmp_path / "x.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "/nonexistent/model.gguf"], "does not exist"),
        (["--model", "no-such-org/no-such-model"], "not in the local Hugging Face cache"),
        (["--layers", "99"], "out of range"),
        (["--layers", "1-x"], "cannot read layer spec"),
        (["--top-k", "0"], "must be at least 1"),
        (["--dtype", "float8"], "invalid choice"),
        (["--device", "tpu"], "unknown device"),
        (["--device", "cuda", "--no-cache"], "CUDA is not available"),
        (["--output", "/nonexistent-dir/x.jsonl"], "does not exist"),
        (["--output", "x.parquet"], "unknown output extension"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tiny_gguf, tmp_path, args, expected):
    model = [] if "--model" in args else ["--model", str(tiny_gguf)]
    done = run_cli("scan", *model, "--cache-dir", str(tmp_path / "c"), *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0] and "Traceback" not in done.stderr


def test_broken_model_file(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 100)
    done = run_cli("scan", "--model", str(broken), "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "cannot read GGUF" in done.stderr


def test_unwritable_output(tiny_gguf, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    done = _scan(tiny_gguf, tmp_path, "--output", str(locked / "x.csv"))
    if __import__("os").geteuid() == 0:
        pytest.skip("root can write anywhere; permission errors cannot be produced")
    assert done.returncode == 2 and "permission denied" in done.stderr


def test_scan_help_documents_the_options():
    done = run_cli("scan", "--help")
    assert done.returncode == 0
    for word in (
        "--layers",
        "--top-k",
        "--output",
        ".jsonl",
        ".csv",
        "--model",
        "--device",
        "--dtype",
        "--cache-dir",
        "--no-cache",
        "--cosine",
    ):
        assert word in done.stdout


def test_unexpected_errors_are_one_line_unless_debugging(tmp_path):
    import os
    import subprocess
    import sys

    from tests.helpers.cli import ROOT

    code = (
        "import tui.cli.commands.scan as command\n"
        "def broken(*args):\n    raise RuntimeError('boom')\n"
        "command.scan = broken\n"
        "from tui.cli import main\nraise SystemExit(main(['scan']))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NEURON_TUI_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "neuron-tui: internal error: RuntimeError: boom; "
        "rerun with NEURON_TUI_DEBUG=1 for the traceback and report it"
    ]
    debug = subprocess.run(
        [sys.executable, "-c", code], env={**env, "NEURON_TUI_DEBUG": "1"}, capture_output=True, text=True
    )
    assert "Traceback" in debug.stderr


def test_two_torchrun_ranks_scan_the_same_bytes_as_one_process_and_rank_0_caches(tiny_gguf, tmp_path):
    from tests.helpers.cli import run_torchrun

    common = ("scan", "--model", str(tiny_gguf), "--top-k", "7")
    single = run_cli(*common, "--cache-dir", str(tmp_path / "one"), "--output", str(tmp_path / "one.jsonl"))
    assert single.returncode == 0, single.stderr
    ranks = run_torchrun(
        *common, "--cache-dir", str(tmp_path / "two"), "--output", str(tmp_path / "two.jsonl")
    )
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert "rank 1/2: layer 1 scanned" in ranks.stderr
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    again = run_cli(*common, "--cache-dir", str(tmp_path / "two"), "--output", str(tmp_path / "three.jsonl"))
    assert again.returncode == 0 and again.stderr.count("from cache") == 3, again.stderr
