"""The activation pass against a brute-force reference, on tiny random models of two
architectures; resuming, caching, and corpora."""

from __future__ import annotations

import numpy as np
import pytest

from engine.activations.documents import Corpus
from engine.activations.job import ActivationJob
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tests.helpers.activation_reference import assert_cases_match, assert_examples_match, reference_evidence


def random_documents(seed: int, count: int = 6) -> tuple[str, ...]:
    rng = np.random.default_rng(seed)
    letters = list("abcdefghij klmnop,.\n")
    return tuple("".join(rng.choice(letters, size=int(rng.integers(20, 200)))) for _ in range(count))


def _engine(model_dir, tmp_path) -> NeuronEngine:
    return NeuronEngine(EngineOptions(model=str(model_dir), device="cpu", cache_dir=tmp_path / "cache"))


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_activation_pass_equals_brute_force(model, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    engine = _engine(model_dir, tmp_path)
    corpus = Corpus("random", random_documents(1))
    settings = ActivationSettings(context=24, examples=5, lift_positions=12, batch_tokens=72)
    scan = ScanSettings(top_k=40)
    results = ActivationJob(engine, [0, 1], corpus, settings, scan).run()
    bridge, tokenizer, _ = engine.activation_model(None)
    forms = engine.token_forms(bridge.cfg.d_vocab)
    for layer in (0, 1):
        got = results[layer]
        ref = reference_evidence(
            bridge.original_model, tokenizer, corpus.documents, layer, 24, 40, settings.keep, 12, forms=forms
        )
        for pole in ("positive", "negative"):
            ref_pole = ref[pole] | {name: ref[name] for name in ("acts", "doc", "position", "token_ids")}
            assert_examples_match(got.pole(pole), ref_pole, 12, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(got.pole(pole).density, ref[pole]["density"])
            np.testing.assert_allclose(got.pole(pole).base_rate, ref[pole]["base_rate"], rtol=1e-12)
            assert np.isfinite(got.pole(pole).lift).any() and (got.pole(pole).hit_rate > 0).any()
        assert (got.negative.values <= 0).all() and (got.positive.values >= 0).all()
        assert (got.act_hist.sum(axis=1) == got.n_positions).all()
        if model == "tiny_llama_dir":
            assert_cases_match(got.cases, ref, rtol=1e-5, atol=1e-6)
        else:
            assert got.cases is None  # GPT-2's MLP is not gated


def test_a_killed_pass_resumes_from_its_last_batch_and_ends_identical(tiny_llama_dir, tmp_path):
    from engine.errors import ScanCancelled

    corpus = Corpus("random", random_documents(2, count=8))
    settings = ActivationSettings(context=16, examples=4, lift_positions=8, batch_tokens=32)
    scan = ScanSettings(top_k=20)
    fresh = ActivationJob(_engine(tiny_llama_dir, tmp_path / "fresh"), [1], corpus, settings, scan).run()

    engine = _engine(tiny_llama_dir, tmp_path / "killed")
    finished = []
    killed = ActivationJob(
        engine,
        [1],
        corpus,
        settings,
        scan,
        listener=lambda p: finished.append(p) if p.stage == "running" else None,
        cancelled=lambda: len(finished) >= 3,
        checkpoint_seconds=0,
    )
    with pytest.raises(ScanCancelled):
        killed.run()
    assert killed.batches_run == 3
    again = ActivationJob(engine, [1], corpus, settings, scan)
    resumed = again.run()
    total_batches = len(
        range(0, sum(1 for _ in again_windows(engine, corpus, settings)), settings.windows_per_batch)
    )
    assert again.batches_run == total_batches - 3
    assert resumed[1].to_bytes() == fresh[1].to_bytes()
    # Now cached: a third job reads the evidence without running the model.
    third = ActivationJob(_engine(tiny_llama_dir, tmp_path / "killed"), [1], corpus, settings, scan)
    assert third.run()[1].to_bytes() == fresh[1].to_bytes() and third.batches_run == 0
    assert third.engine._runnable is None


def again_windows(engine, corpus, settings):
    from engine.activations.windows import tokenize_corpus

    _, tokenizer, _ = engine.activation_model()
    return tokenize_corpus(
        corpus, lambda t: tokenizer(t)["input_ids"], settings.context, settings.max_tokens
    ).windows


def _write_jsonl_corpus(path, documents) -> str:
    import json

    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents), encoding="utf-8")
    return str(path)


ACTIVATION_ARGS = ("--context", "16", "--batch-tokens", "32", "--examples", "3", "--lift-positions", "6")


def test_two_torchrun_ranks_write_the_same_bytes_as_one_process(tiny_llama_dir, tmp_path):
    import json

    from tests.helpers.cli import run_cli, run_torchrun

    corpus = _write_jsonl_corpus(tmp_path / "corpus.jsonl", random_documents(3, count=9))
    common = ("activations", "--model", str(tiny_llama_dir), "--corpus", corpus, *ACTIVATION_ARGS)
    single = run_cli(*common, "--cache-dir", str(tmp_path / "one"), "--output", str(tmp_path / "one.jsonl"))
    assert single.returncode == 0, single.stderr
    ranks = run_torchrun(
        *common, "--cache-dir", str(tmp_path / "two"), "--output", str(tmp_path / "two.jsonl")
    )
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert "rank 1/2" in ranks.stderr and "rank 0/2" in ranks.stderr
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    # The record fields users rely on: the positive pole at the top level, the negative pole and
    # the sign cases beside it.
    record = json.loads((tmp_path / "one.jsonl").read_text().splitlines()[0])
    pole_fields = {
        "density",
        "lift",
        "hit_rate",
        "base_rate",
        "direct_effect",
        "input_forms",
        "input_entropy",
        "attr_mean",
    }
    assert pole_fields | {"examples", "negative", "cases", "attr_top1", "layer_attr_dominant"} <= set(record)
    assert pole_fields | {"examples"} == set(record["negative"])
    assert all(e["activation"] < 0 for e in record["negative"]["examples"])
    assert all(e["activation"] > 0 for e in record["examples"])
    assert list(record["cases"]) == ["gate+up+", "gate+up-", "gate-up+", "gate-up-"]
    assert abs(sum(record["cases"].values()) - 1) < 1e-12


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: str(d / "missing.txt"), "does not exist"),
        (lambda d: _bytes(d / "binary.txt", b"ab\x00cd"), "looks binary"),
        (lambda d: _bytes(d / "empty.txt", b"  \n"), "holds no text"),
        (lambda d: _bytes(d / "bad.jsonl", b'{"text": "a"}\n{"title": "b"}\n'), 'line 2 has no "text"'),
        (lambda d: _bytes(d / "latin.txt", "caf\u00e9".encode("latin-1")), "not valid UTF-8"),
        (lambda d: "hf:no-such-dataset-anywhere", "not in the local Hugging Face cache"),
        (lambda d: _bytes(d / "notes.md", b"text"), "neither .txt nor .jsonl"),
        (lambda d: str(_folder(d)), "holds no .txt files"),
    ],
    ids=[
        "missing",
        "binary",
        "empty",
        "no-text-field",
        "latin-1",
        "unknown-dataset",
        "suffix",
        "empty-folder",
    ],
)
def test_bad_corpora_exit_2_with_one_line_before_loading_the_model(make, expected, tiny_llama_dir, tmp_path):
    from tests.helpers.cli import run_cli

    done = run_cli(
        "activations",
        "--model",
        str(tiny_llama_dir),
        "--corpus",
        make(tmp_path),
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert not (tmp_path / "o.jsonl").exists()


def _bytes(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _folder(directory):
    folder = directory / "empty-folder"
    folder.mkdir()
    (folder / "readme.md").write_text("not a txt")
    return folder


async def test_the_explorer_runs_the_corpus_pass_in_the_background_and_shows_lift_and_examples(
    tiny_llama_dir, tmp_path
):
    from tests.helpers.app import settle, showing, wait_for
    from tui.app import NeuronApp
    from tui.screens.detail import NeuronDetailScreen
    from tui.widgets.neuron_list import NeuronList

    corpus = Corpus("random", random_documents(4))
    settings = ActivationSettings(context=24, examples=4, lift_positions=8, batch_tokens=48)
    engine = _engine(tiny_llama_dir, tmp_path)
    app = NeuronApp(engine, ScanSettings(top_k=20), activation=settings, corpus=corpus)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        listing = app.query_one(NeuronList)
        assert listing.neurons.lift is None
        from tui.screens.pass_dialog import PassDialog

        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, PassDialog))
        await pilot.press("down", "enter")  # all layers, the default cap
        await pilot.press("j", "j")  # keys keep working while the pass runs
        await wait_for(pilot, lambda: listing.neurons.lift is not None)
        assert "lift" in str(listing._header())
        # The dialog's default cap on a CPU (50,000 tokens) is more than this corpus holds.
        expected, reading = engine.best_evidence(1, corpus.content_hash, settings, ScanSettings(top_k=20))
        assert reading.cap == 50_000 and reading.complete
        np.testing.assert_array_equal(listing.neurons.lift, expected.positive.lift)
        while app.state.sort_key != "lift":
            await pilot.press("s")
        lifts = expected.positive.lift[listing.order]
        known = int(np.isfinite(lifts).sum())
        assert np.isfinite(lifts[:known]).all() and np.isnan(lifts[known:]).all()  # unknown last
        assert (np.diff(lifts[:known]) <= 0).all()  # largest lift first
        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        text = app.screen.evidence_text.plain
        assert "on text" in text and "⟦" in text and "density" in text
        assert "+ pole" in text and "− pole" in text and "gate-up+" in text  # both poles, the cases
        await wait_for(pilot, lambda: app.screen.inputs is not None)  # the input side, from a worker
        shown = app.screen.io_text.plain
        assert "reads ←" in shown and "writes →" in shown and "IO class" in shown and "gate +" in shown
        await pilot.press("escape", "[")  # another layer: its evidence comes from the cache
        await wait_for(pilot, lambda: showing(app, 0) and listing.neurons.lift is not None)
