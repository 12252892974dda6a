"""`neuron-tui diff`: a checkpoint against a copy with one layer perturbed, against itself, and
against a model of another shape."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_cli

PERTURBED = (3, 17, 40)  # neurons of layer 1 whose write is turned


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path, dict[int, np.ndarray]]:
    """A tiny Llama and a copy whose layer-1 W_out rows PERTURBED have a known vector added."""
    from tests.helpers.models import write_hf_llama, write_perturbed_copy

    root = tmp_path_factory.mktemp("diff")
    base = write_hf_llama(root / "base", n_layers=3, seed=11)
    added = write_perturbed_copy(base, root / "tuned", 1, PERTURBED)
    return base, root / "tuned", added


def test_diff_against_a_copy_with_layer_1_perturbed(checkpoints, tmp_path):
    from safetensors.numpy import load_file

    base, tuned, _added = checkpoints
    out = tmp_path / "diff.jsonl"
    done = run_cli("diff", "--model", str(base), "--against", str(tuned), "--cache-dir", str(tmp_path / "c"),
                   "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "layer 1: cos p50 1.0000" in done.stderr and "3 turned" in done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 * 64 and records[0]["settings"]["against"]
    (base_file,) = base.glob("*.safetensors")
    (tuned_file,) = tuned.glob("*.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    a, b = load_file(base_file)[name].astype(np.float64), load_file(tuned_file)[name].astype(np.float64)
    for record in records:
        if record["layer"] == 1 and record["neuron"] in PERTURBED:
            i = record["neuron"]
            expected = a[:, i] @ b[:, i] / np.linalg.norm(a[:, i]) / np.linalg.norm(b[:, i])
            assert record["cos"] == pytest.approx(expected, rel=1e-12) and record["cos"] < 0.9999
            assert record["max_dot_change"] != 0
        else:  # everything else is the same unit with the same weights
            assert record["cos"] == pytest.approx(1.0, abs=1e-12)
            assert record["max_dot_change"] == 0 and record["null_z_change"] == 0
            assert record["promote_jaccard"] == record["suppress_jaccard"] == 1.0 and record["top_kept"]
            assert record["promote"] == record["promote_against"]
    # Cached per pair: again, the same bytes without scanning; CSV holds the same rows.
    again = run_cli("diff", "--model", str(base), "--against", str(tuned), "--cache-dir", str(tmp_path / "c"),
                    "--output", str(tmp_path / "again.csv"))  # fmt: skip
    assert again.returncode == 0 and "computed" not in again.stderr, again.stderr
    rows = list(csv.DictReader((tmp_path / "again.csv").open()))
    assert [float(row["cos"]) for row in rows] == [record["cos"] for record in records]


def test_diff_against_itself_is_identical(checkpoints, tmp_path):
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ScanSettings

    base, _tuned, _ = checkpoints
    one, two = (NeuronEngine(EngineOptions(model=str(base), cache_dir=tmp_path / "c")) for _ in range(2))
    one.check_comparable(two)
    for layer in range(3):
        found = one.diff(layer, two, ScanSettings())
        np.testing.assert_allclose(found.cosine, 1.0, rtol=0, atol=1e-12)
        assert (
            found.top_kept.all()
            and (found.promote_jaccard == 1).all()
            and (found.suppress_jaccard == 1).all()
        )
        assert not found.max_dot_change.any() and not found.null_z_change.any()
        assert one.cached_diff(layer, two, ScanSettings()) is not None
    one.close()
    two.close()


def test_diff_refuses_another_shape_in_one_line(checkpoints, tiny_gguf, tmp_path):
    base, _tuned, _ = checkpoints
    refused = run_cli(
        "diff", "--model", str(base), "--against", str(tiny_gguf), "--cache-dir", str(tmp_path / "c")
    )
    assert refused.returncode == 2
    assert "cannot diff" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    missing = run_cli("diff", "--model", str(base), "--cache-dir", str(tmp_path / "c"))
    assert missing.returncode == 2 and "--against" in missing.stderr
