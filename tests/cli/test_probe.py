"""``neuron-tui probe``: bad input gets one line and exit 2; the records name the units."""

from __future__ import annotations

import json

import pytest

from tui.cli import main


@pytest.mark.parametrize(
    "args, words",
    [
        (["--text", "x", "-o", "p.csv"], ".jsonl or .json"),
        (["--text", "   "], "the text is empty"),
        ([], "--text T or --text-file F"),
        (["--text", "x", "--text-file", "f.txt"], "one of them"),
        (["--text", "x", "--layers", "9"], "layers 0-1"),
        (["--text-file", "missing.txt"], "cannot read missing.txt"),
        (["--text", "word " * 100], "more than the model's context of 64"),
    ],
)
def test_bad_input_is_one_line(tiny_llama_dir, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    assert main(["probe", "--model", str(tiny_llama_dir), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines


def test_records_name_each_token_and_layer(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["--model", str(tiny_llama_dir), "--text", "a cat", "--top", "4", "-o", str(out)]
    assert main(["probe", *args]) == 0
    document = json.loads(out.read_text())
    assert document["settings"]["top"] == 4 and "scale" in document["settings"]
    (first, *rest) = document["tokens"]
    assert first["set_apart"] and first["position"] == 0 and rest
    assert [entry["layer"] for entry in first["layers"]] == [0, 1]
    assert all(len(entry["units"]) == 4 for row in document["tokens"] for entry in row["layers"])
