"""The lens from the command line: `lens fit` in one process and on two torchrun ranks, scans
through a lens file, and lenses that cannot be used refused in one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.cli import run_cli, run_torchrun


@pytest.fixture(scope="module")
def runnable_llama(tmp_path_factory) -> Path:
    from tests.helpers.models import write_hf_llama

    return write_hf_llama(tmp_path_factory.mktemp("llama") / "model", n_layers=3, with_bos=True, seed=7)


def _corpus(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "the", "of", "x9", "brown", "fox", "zeta"]
    path = folder / "corpus.txt"
    path.write_text(" ".join(rng.choice(words, size=2000)))
    return path


def test_lens_fit_on_two_ranks_equals_one_process(runnable_llama, tmp_path):
    from engine.lens.artifact import open_lens_file

    corpus = _corpus(tmp_path)
    fit = ("lens", "fit", "--model", str(runnable_llama), "--corpus", str(corpus), "--prompts", "3")
    fit += ("--max-seq-len", "40", "--dim-batch", "8")
    one = run_cli(*fit, env={"NEURON_TUI_DATA_DIR": str(tmp_path / "one")})
    assert one.returncode == 0, one.stderr
    assert "prompt 3/3 fitted" in one.stderr and "--lens jacobian" in one.stderr
    two = run_torchrun(*fit, env={"NEURON_TUI_DATA_DIR": str(tmp_path / "two")})
    assert two.returncode == 0, two.stderr[-3000:]
    assert "rank 1/2: prompt 1/1 fitted" in two.stderr
    (path_one,) = (tmp_path / "one").rglob("*.pt")
    (path_two,) = (tmp_path / "two").rglob("*.pt")
    assert path_one.name == path_two.name  # named by the fit's settings
    lens_one, lens_two = open_lens_file(path_one), open_lens_file(path_two)
    assert lens_one.n_prompts == lens_two.n_prompts == 3
    for layer in (0, 1):
        np.testing.assert_allclose(lens_one.matrices[layer], lens_two.matrices[layer], rtol=0, atol=1e-6)
    # Fitted once: asking again answers at once, and --lens jacobian finds the fit.
    again = run_cli(*fit, env={"NEURON_TUI_DATA_DIR": str(tmp_path / "one")})
    assert again.returncode == 0 and "prompt" not in again.stderr.replace("prompts of", ""), again.stderr
    scan = run_cli(
        "scan", "--model", str(runnable_llama), "--lens", "jacobian", "--layers", "0",
        "--cache-dir", str(tmp_path / "cache"), env={"NEURON_TUI_DATA_DIR": str(tmp_path / "one")},
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    record = json.loads(scan.stdout.splitlines()[0])
    assert record["settings"]["lens"] == f"jacobian:{lens_one.digest[:12]}"
    assert record["settings"]["lens_file"] == str(path_one)


def test_scan_through_a_lens_file_matches_the_definition(tiny_gguf, tiny_weights, tmp_path):
    from transformer_lens.tools.analysis import JacobianLens

    from engine.settings import Projection
    from tests.helpers.reference import reference_layer

    d_model = tiny_weights.w_out[0].shape[1]
    generator = torch.Generator().manual_seed(5)
    matrices = {
        layer: torch.eye(d_model) + 0.3 * torch.randn((d_model, d_model), generator=generator)
        for layer in (0, 1)
    }
    lens_path = tmp_path / "published.pt"
    JacobianLens(matrices, n_prompts=9, d_model=d_model).save(str(lens_path))  # fp16, as published
    common = ("scan", "--model", str(tiny_gguf), "--cache-dir", str(tmp_path / "c"), "--layers", "0-1")
    through = run_cli(*common, "--lens", f"jacobian:{lens_path}", "--output", str(tmp_path / "j.csv"))
    assert through.returncode == 0, through.stderr
    rows = list(csv.DictReader((tmp_path / "j.csv").open()))
    assert {row["lens"] for row in rows} == {f"jacobian:{rows[0]['lens'].split(':')[1]}"}
    for layer in (0, 1):
        transport = matrices[layer].to(torch.float16).double().numpy()
        w = tiny_weights.w_out[layer].astype(np.float64) @ transport.T
        ref = reference_layer(w, tiny_weights.unembed, tiny_weights.final_norm, Projection(), 10, 8)
        mine = [row for row in rows if int(row["layer"]) == layer]
        np.testing.assert_allclose([float(row["max_dot"]) for row in mine], ref["max_dot"], rtol=1e-5)
        assert [int(row["token_id_1"]) for row in mine] == ref["top_ids"][:, 0].tolist()
    plain = run_cli(*common, "--output", str(tmp_path / "plain.csv"))
    assert plain.returncode == 0 and "from cache" not in plain.stderr  # another lens, other results
    warm = run_cli(*common, "--lens", f"jacobian:{lens_path}", "--output", str(tmp_path / "j2.csv"))
    assert warm.stderr.count("from cache") == 2, warm.stderr
    assert (tmp_path / "j2.csv").read_bytes() == (tmp_path / "j.csv").read_bytes()


def test_lenses_that_cannot_be_used_are_refused_in_one_line(tiny_gguf, tmp_path):
    from transformer_lens.tools.analysis import JacobianLens

    JacobianLens({0: torch.eye(16)}, n_prompts=1, d_model=16).save(str(tmp_path / "narrow.pt"))
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    common = ("scan", "--model", str(tiny_gguf), "--cache-dir", str(tmp_path / "c"))
    for lens, says in [
        ("jacobian", "no Jacobian lens was fitted for this model yet"),
        (f"jacobian:{tmp_path / 'missing.pt'}", "no lens file at"),
        (f"jacobian:{tmp_path / 'junk.pt'}", "cannot read the lens file"),
        (f"jacobian:{tmp_path / 'narrow.pt'}", "fitted for d_model 16, but this model has d_model 32"),
        ("tuned", "unknown lens 'tuned'"),
    ]:
        refused = run_cli(*common, "--lens", lens)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert run_cli("lens").returncode == 2


def test_lens_fit_on_a_model_whose_tokenizer_has_no_bos(tmp_path):
    """A byte-level tokenizer with no special token and exactly the model's vocabulary: the
    TransformerLens BOS would be past the vocabulary, so the fit runs without one, as the corpus
    pass does."""
    from engine.lens.artifact import open_lens_file
    from engine.lens.fit import bos_in_vocabulary
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from tests.helpers.models import write_hf_llama

    model = write_hf_llama(tmp_path / "model", n_layers=2, seed=3)  # no BOS, 300 tokens, d_vocab 300
    fit = ("lens", "fit", "--model", str(model), "--corpus", str(_corpus(tmp_path)), "--prompts", "2")
    done = run_cli(*fit, "--max-seq-len", "24", "--dim-batch", "16", "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert "prompt 2/2 fitted" in done.stderr and "error" not in done.stderr, done.stderr
    (path,) = (tmp_path / "data").rglob("*.pt")
    lens = open_lens_file(path)
    assert lens.n_prompts == 2 and list(lens.matrices) == [0]
    assert np.isfinite(lens.matrices[0]).all() and lens.matrices[0].shape == (32, 32)
    # What the model was given: the corpus window's own tokens, no BOS, every id in the vocabulary.
    engine = NeuronEngine(EngineOptions(model=str(model), cache_dir=tmp_path / "c"))
    bridge, tokenizer, _device = engine.activation_model()
    text = "alpha beta gamma"
    with bos_in_vocabulary(bridge) as bos:
        tokens = bridge.to_tokens(text)[0].tolist()
    assert not bos and tokens == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert max(tokens) < 300 and bridge.cfg.default_prepend_bos  # the model's own setting is back
    engine.close()


def test_a_model_with_a_bos_in_its_vocabulary_keeps_it(runnable_llama, tmp_path):
    from engine.lens.fit import bos_in_vocabulary
    from engine.neuron_engine import EngineOptions, NeuronEngine

    engine = NeuronEngine(EngineOptions(model=str(runnable_llama), cache_dir=tmp_path / "c"))
    bridge, tokenizer, _device = engine.activation_model()
    with bos_in_vocabulary(bridge) as bos:
        tokens = bridge.to_tokens("alpha beta")[0].tolist()
    assert bos and tokens[0] == tokenizer.bos_token_id == 299
    engine.close()
