"""Evidence on demand: one layer's pass gives the bytes of the full pass; a pass lands the evidence
of the tokens read so far (as a pass capped there would give it), keeps it when stopped, and says
where it resumes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.activations.documents import Corpus
from engine.activations.job import ActivationJob
from engine.errors import ScanCancelled
from engine.settings import ActivationSettings, ScanSettings
from engine.store.products import EVIDENCE, PARTIAL_EVIDENCE, READINGS
from tests.engine.test_activations import _engine, random_documents

SETTINGS = ActivationSettings(context=16, examples=4, lift_positions=8, batch_tokens=32)
SCAN = ScanSettings(top_k=12)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus("random", random_documents(7, count=9))


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_one_layers_pass_writes_the_full_pass_bytes(model, corpus, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    settings = replace(SETTINGS, max_tokens=300)
    full = ActivationJob(_engine(model_dir, tmp_path / "full"), [0, 1], corpus, settings, SCAN).run()

    engine = _engine(model_dir, tmp_path / "one")
    last = ActivationJob(engine, [1], corpus, settings, SCAN)
    assert last.run()[1].to_bytes() == full[1].to_bytes()
    assert last.batches_short == 0  # no scales known yet: this pass ran to the final norm
    # Now the final norm's scales of these windows are known: layer 0's pass stops after layer 0.
    first = ActivationJob(engine, [0], corpus, settings, SCAN)
    assert first.run()[0].to_bytes() == full[0].to_bytes()
    assert first.batches_short == first.batches_run > 0
    key = engine.products.key(EVIDENCE, corpus.content_hash, settings, SCAN, 0)
    assert engine.products.cache.get(key) == full[0].to_bytes()  # the same cache entry as the full pass


def test_a_stopped_pass_keeps_what_it_read_and_resumes_from_there(tiny_llama_dir, corpus, tmp_path):
    engine = _engine(tiny_llama_dir, tmp_path / "stopped")
    events, landed = [], []
    stopped = ActivationJob(
        engine,
        [1],
        corpus,
        SETTINGS,
        SCAN,
        listener=events.append,
        cancelled=lambda: sum(e.stage == "running" for e in events) >= 3,
        on_landed=lambda layer, evidence, reading: landed.append((layer, evidence, reading)),
        land_seconds=0,
    )
    with pytest.raises(ScanCancelled):
        stopped.run()
    assert events[-1].stage == "stopped"
    # Landed after every batch (land_seconds 0), growing, then once more when stopped.
    reads = [reading.read for _, _, reading in landed]
    assert reads[0] > 0 and reads == sorted(reads) and len(reads) >= 3
    read = reads[-1]
    assert all(not reading.complete and reading.of == events[-1].total_tokens for *_, reading in landed)

    # What was read is in the cache, and is exactly a pass capped at that many tokens.
    found, reading = engine.best_evidence(1, corpus.content_hash, SETTINGS, SCAN)
    assert (reading.read, reading.complete) == (read, False)
    assert reading.label == f"{read:,} of {reading.of:,} tokens read"
    capped = ActivationJob(
        _engine(tiny_llama_dir, tmp_path / "capped"), [1], corpus, replace(SETTINGS, max_tokens=read), SCAN
    ).run()
    assert found.to_bytes() == capped[1].to_bytes() == landed[-1][1].to_bytes()
    first_landing_read = reads[0]
    first_capped = ActivationJob(
        _engine(tiny_llama_dir, tmp_path / "first"),
        [1],
        corpus,
        replace(SETTINGS, max_tokens=first_landing_read),
        SCAN,
    ).run()
    assert landed[0][1].to_bytes() == first_capped[1].to_bytes()

    # Resuming says where it starts and counts from there.
    events.clear()
    whole = ActivationJob(engine, [1], corpus, SETTINGS, SCAN, listener=events.append).run()
    resuming = [e for e in events if e.stage == "resuming"]
    assert len(resuming) == 1 and resuming[0].done_tokens == read
    running = [e for e in events if e.stage == "running"]
    assert running[0].start_tokens == read and running[0].done_tokens > read
    assert running[-1].done_tokens == running[-1].total_tokens
    fresh = ActivationJob(_engine(tiny_llama_dir, tmp_path / "fresh"), [1], corpus, SETTINGS, SCAN).run()
    assert whole[1].to_bytes() == fresh[1].to_bytes()
    # The finished pass supersedes the partial one.
    found, reading = engine.best_evidence(1, corpus.content_hash, SETTINGS, SCAN)
    assert reading.complete and found.to_bytes() == fresh[1].to_bytes()
    assert engine.products.get(PARTIAL_EVIDENCE, corpus.content_hash, SETTINGS, SCAN, 1) is None


def test_the_most_read_evidence_is_found_under_any_cap(tiny_llama_dir, corpus, tmp_path):
    engine = _engine(tiny_llama_dir, tmp_path / "caps")
    small = ActivationJob(engine, [0], corpus, replace(SETTINGS, max_tokens=96), SCAN).run()
    found, reading = engine.best_evidence(0, corpus.content_hash, SETTINGS, SCAN)
    assert (reading.cap, reading.read, reading.complete) == (96, 96, True)
    assert found.to_bytes() == small[0].to_bytes()
    larger = ActivationJob(engine, [0], corpus, replace(SETTINGS, max_tokens=200), SCAN).run()
    found, reading = engine.best_evidence(0, corpus.content_hash, SETTINGS, SCAN)
    assert reading.cap == 200 and found.to_bytes() == larger[0].to_bytes()
    # A damaged index loses nothing: the evidence of the asked settings is still found by its key.
    key = engine.products.key(READINGS, corpus.content_hash, SETTINGS, SCAN, 0)
    engine.products.cache.set(key, b"not json")
    asked = replace(SETTINGS, max_tokens=96)
    found, reading = engine.best_evidence(0, corpus.content_hash, asked, SCAN)
    assert found.to_bytes() == small[0].to_bytes() and reading.complete
    assert engine.best_evidence(1, corpus.content_hash, SETTINGS, SCAN) is None


def _stopped(engine, corpus, layers, settings, batches: int) -> int:
    """Run a pass and stop it after ``batches`` batches; the tokens it read."""
    events: list = []
    job = ActivationJob(
        engine,
        layers,
        corpus,
        settings,
        SCAN,
        listener=events.append,
        cancelled=lambda: sum(e.stage == "running" for e in events) >= batches,
    )
    with pytest.raises(ScanCancelled):
        job.run()
    assert events[-1].stage == "stopped" and job.batches_run == batches
    return events[-1].done_tokens


def _run(engine, corpus, layers, settings) -> tuple[dict, int | None, ActivationJob]:
    """A pass to the end: (evidence, the tokens it resumed at or None, the job)."""
    events: list = []
    job = ActivationJob(engine, layers, corpus, settings, SCAN, listener=events.append)
    results = job.run()
    resuming = [e.done_tokens for e in events if e.stage == "resuming"]
    return results, (resuming[0] if resuming else None), job


def test_a_pass_under_another_cap_resumes_where_a_stopped_one_was(tiny_llama_dir, corpus, tmp_path):
    """The detail's pass (one cap) stopped at N; a pass under another cap over the same layer
    resumes at N when N is within its cap (its batches up to N are the same), and gives the bytes
    of a fresh pass under its cap; under a cap below N it starts afresh."""
    engine = _engine(tiny_llama_dir, tmp_path / "caps")
    read = _stopped(engine, corpus, [1], SETTINGS, batches=3)
    _, _, whole = _run(_engine(tiny_llama_dir, tmp_path / "count"), corpus, [1], SETTINGS)
    total = whole.lander.total
    assert read < total - 48

    larger = replace(SETTINGS, max_tokens=read + 40)  # ends inside a later batch
    got, resumed_at, job = _run(engine, corpus, [1], larger)
    assert resumed_at == read
    fresh, _, fresh_job = _run(_engine(tiny_llama_dir, tmp_path / "fresh-larger"), corpus, [1], larger)
    assert job.batches_run == fresh_job.batches_run - 3
    assert got[1].to_bytes() == fresh[1].to_bytes()

    smaller = replace(SETTINGS, max_tokens=read - 5)  # cannot be rebuilt from N tokens: afresh
    got, resumed_at, job = _run(engine, corpus, [1], smaller)
    fresh, _, fresh_job = _run(_engine(tiny_llama_dir, tmp_path / "fresh-smaller"), corpus, [1], smaller)
    assert resumed_at is None and job.batches_run == fresh_job.batches_run
    assert got[1].to_bytes() == fresh[1].to_bytes()

    # The stopped pass's own checkpoint is still there: it resumes at N itself.
    got, resumed_at, _ = _run(engine, corpus, [1], SETTINGS)
    assert resumed_at == read and got[1].to_bytes() == whole.run()[1].to_bytes()


def test_a_pass_over_one_layer_resumes_from_a_pass_over_more(tiny_llama_dir, corpus, tmp_path):
    """A layer's state depends only on the batches read: a pass over [1] resumes from a stopped
    pass over [0, 1] (any cap within reach); a pass over [0, 1] after one over [0] starts afresh
    (its layer 1 needs those batches read again)."""
    engine = _engine(tiny_llama_dir, tmp_path / "more")
    read = _stopped(engine, corpus, [0, 1], SETTINGS, batches=2)
    capped = replace(SETTINGS, max_tokens=read + 50)
    got, resumed_at, _ = _run(engine, corpus, [1], capped)
    fresh, _, _ = _run(_engine(tiny_llama_dir, tmp_path / "fresh-one"), corpus, [1], capped)
    assert resumed_at == read and got[1].to_bytes() == fresh[1].to_bytes()

    fewer = _engine(tiny_llama_dir, tmp_path / "fewer")
    _stopped(fewer, corpus, [0], SETTINGS, batches=2)
    got, resumed_at, job = _run(fewer, corpus, [0, 1], SETTINGS)
    fresh, _, fresh_job = _run(_engine(tiny_llama_dir, tmp_path / "fresh-two"), corpus, [0, 1], SETTINGS)
    assert resumed_at is None and job.batches_run == fresh_job.batches_run
    assert all(got[layer].to_bytes() == fresh[layer].to_bytes() for layer in (0, 1))


def test_a_checkpoint_whose_batches_were_cut_elsewhere_is_passed_over():
    """A pass capped inside a window ends with a shorter batch than a pass with a larger cap:
    its checkpoint serves that pass only up to the batches they share."""
    import numpy as np
    import torch

    from engine.activations.checkpoints import OtherBatches, checkpoint_arrays, restore
    from engine.activations.final_readout import Readouts
    from engine.activations.state import LayerActivationState

    def state() -> dict:
        return {0: LayerActivationState(8, 4, 2, False, torch.device("cpu"))}

    short = [[(0, 4), (4, 8)], [(8, 10)]]  # capped at 10 tokens: the third window cut
    long = [[(0, 4), (4, 8)], [(8, 12), (12, 14)]]
    read_so_far = Readouts(np.arange(10, dtype=np.float64) + 1.0, np.arange(10, dtype=np.int64) + 7)
    arrays, read = checkpoint_arrays(state(), read_so_far, {0, 1}, short)
    assert read == 10
    with pytest.raises(OtherBatches):
        restore(arrays, state(), Readouts.empty(14), long, own=False)
    arrays, read = checkpoint_arrays(state(), read_so_far, {0}, short)
    into = Readouts.empty(14)
    assert restore(arrays, state(), into, long, own=False) == {0} and read == 8
    np.testing.assert_array_equal(into.scales[:8], read_so_far.scales[:8])
    np.testing.assert_array_equal(into.predicted[:8], read_so_far.predicted[:8])
    assert not into.scales[8:].any() and not into.predicted[8:].any()
