"""The MCP tools on the bundled model say what the commands export: one server, one layer's scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.mcp_client import answer, mcp_session, read
from tui.cli import main

pytestmark = pytest.mark.slow
LAYER = 29


def _command(*args: str) -> None:
    assert main([*args]) == 0


def _jsonl(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "settings"} for line in path.open()]


async def test_tools_equal_the_commands_exports(tmp_path):
    async with mcp_session() as client:
        cold = await answer(client, "list_layers")
        assert cold["n_layers"] == 30 and not cold["layers"][LAYER]["scanned"]

        listed = await answer(client, "layer_neurons", layer=LAYER, limit=4, detail="full")
        detail = await answer(client, "neuron_detail", layer=LAYER, neuron=1135)
        found = await answer(client, "search_token", text=" her", layers=str(LAYER), top=5)
        covered = await answer(client, "coverage", layers=str(LAYER), show=5)
        exported = await answer(client, "export", what="scan", path="scan29.jsonl", layers=str(LAYER))
        card = json.loads(await read(client, "neuron-tui://model"))
        findings = await read(client, "neuron-tui://findings")

    async with mcp_session() as client:  # a second server on the warm cache: the model stays shut
        warm = await answer(client, "list_layers")
        assert not warm["model_loaded"] and warm["layers"][LAYER]["scanned"]

    # neuron-tui scan: layer_neurons' records are its records, in max-dot order
    _command("scan", "--layers", str(LAYER), "-o", str(tmp_path / "scan.jsonl"))
    scan = {record["neuron"]: record for record in _jsonl(tmp_path / "scan.jsonl")}
    largest = sorted((r["max_dot"] for r in scan.values()), reverse=True)[:4]
    assert [r["max_dot"] for r in listed["records"]] == largest
    assert all(record == scan[record["neuron"]] for record in listed["records"])
    assert detail["record"] == scan[1135] and detail["record"]["input"]  # the input side included
    assert [t["token"] for t in detail["record"]["promote"][:3]] == [" her", " she", " herself"]
    assert _jsonl(Path(exported["path"])) == list(scan.values())
    assert Path(exported["path"]).parent.name == "exports" and exported["count"] == 1536

    # neuron-tui tokens, coverage, layers
    _command("tokens", " her", "--layers", str(LAYER), "--top", "5", "-o", str(tmp_path / "t.jsonl"))
    assert found["rows"] == _jsonl(tmp_path / "t.jsonl")
    _command("coverage", "--layers", str(LAYER), "--show", "5", "-o", str(tmp_path / "c.json"))
    document = json.loads((tmp_path / "c.json").read_text())
    assert covered == {k: v for k, v in document.items() if k != "settings"}
    _command("layers", "--layers", str(LAYER), "-o", str(tmp_path / "l.jsonl"))
    assert warm["layers"][LAYER]["summary"] == _jsonl(tmp_path / "l.jsonl")[0]
    assert card["d_mlp"] == 1536 and card["d_vocab"] == 49152
    assert "L29/N1135" in findings
