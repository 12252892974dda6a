"""The Jacobian lens: scans through it against float64, its files, its fit, and TransformerLens's
own readout of the same lens."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ScanCancelled, UserError
from engine.lens.artifact import open_lens_file
from engine.scan.layer_scan import scan_layer
from engine.scan.projection import ProjectedUnembed
from engine.settings import Lens, Projection, ScanSettings
from tests.helpers.exactness import assert_layer_matches
from tests.helpers.models import random_layer
from tests.helpers.reference import reference_layer

ALL_PROJECTIONS = [Projection(*flags) for flags in itertools.product([False, True], repeat=3)]


def _random(seed: int, d_model=40, d_mlp=120, d_vocab=1500):
    rng = np.random.default_rng(seed)
    w, u, g = random_layer(rng, d_model, d_mlp, d_vocab)
    # A lens is near the identity plus a rotation-and-stretch of order one, stored in fp16.
    j = (np.eye(d_model) + 0.4 * rng.standard_normal((d_model, d_model))).astype(np.float16)
    return w, u, g, j.astype(np.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("projection", ALL_PROJECTIONS, ids=lambda p: p.label)
def test_scan_through_the_lens_equals_float64_reference(projection, dtype):
    w, u, g, j = _random(5)
    unembed = ProjectedUnembed(u, g, projection, torch.device("cpu"), dtype)
    result = scan_layer(2, w, unembed, top_k=10, token_top_n=8, chunk_tokens=211, transport=j)
    # The definition: each direction is J w (float64), then the projection as for any direction.
    assert_layer_matches(result, reference_layer(w.astype(np.float64) @ j.T, u, g, projection, 10, 8))


def test_the_identity_lens_reads_as_the_logit_lens():
    w, u, g, _ = _random(6)
    unembed = ProjectedUnembed(u, g, Projection(), torch.device("cpu"), torch.float32)
    plain = scan_layer(0, w, unembed, 10, 8)
    through = scan_layer(0, w, unembed, 10, 8, transport=np.eye(w.shape[1]))
    np.testing.assert_array_equal(plain.top_ids, through.top_ids)
    np.testing.assert_array_equal(plain.top_dots, through.top_dots)


def _tl_lens(d_model: int, layers: list[int], seed: int = 0, n_prompts: int = 7):
    from transformer_lens.tools.analysis import JacobianLens

    generator = torch.Generator().manual_seed(seed)
    return JacobianLens(
        {layer: torch.randn((d_model, d_model), generator=generator) for layer in layers},
        n_prompts=n_prompts,
        d_model=d_model,
        metadata={"corpus": "test"},
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_lens_file_round_trip(tmp_path, dtype):
    from transformer_lens.tools.analysis import JacobianLens

    lens = _tl_lens(24, [0, 1, 2])
    path = tmp_path / "lens.pt"
    lens.save(str(path), dtype=dtype)
    opened = open_lens_file(path)
    again = JacobianLens.load(str(path))
    assert opened.source_layers == again.source_layers == [0, 1, 2]
    assert (opened.d_model, opened.n_prompts) == (24, 7)
    for layer in opened.source_layers:
        np.testing.assert_array_equal(opened.matrices[layer], again.jacobians[layer].double().numpy())
        np.testing.assert_array_equal(
            opened.matrices[layer], lens.jacobians[layer].to(dtype).double().numpy()
        )
    opened.check_model(24, 4)
    assert opened.transport(3, 4) is None  # the last layer reads through the identity
    # Another lens is another fingerprint, so its results are cached apart.
    _tl_lens(24, [0, 1, 2], seed=1).save(str(tmp_path / "other.pt"), dtype=dtype)
    assert open_lens_file(tmp_path / "other.pt").digest != opened.digest


def test_bad_lens_files_fail_in_one_line(tmp_path):
    (tmp_path / "text.pt").write_text("not a lens")
    torch.save({"weights": torch.ones(3)}, tmp_path / "foreign.pt")
    torch.save({"J": {0: torch.ones(3, 4)}, "d_model": 3, "n_prompts": 1}, tmp_path / "shape.pt")
    torch.save({"J": {0: torch.full((3, 3), float("nan"))}, "d_model": 3}, tmp_path / "nan.pt")
    for name, says in [
        ("missing.pt", "no lens file"),
        ("text.pt", "cannot read the lens file"),
        ("foreign.pt", "neither a 'J' key"),
        ("shape.pt", "not 3x3"),
        ("nan.pt", "non-finite"),
    ]:
        with pytest.raises(UserError, match=says) as caught:
            open_lens_file(tmp_path / name)
        assert "\n" not in str(caught.value)
    _tl_lens(24, [0, 5]).save(str(tmp_path / "lens.pt"))
    opened = open_lens_file(tmp_path / "lens.pt")
    with pytest.raises(UserError, match="d_model 24, but this model has d_model 32"):
        opened.check_model(32, 8)
    with pytest.raises(UserError, match=r"layers \[5\], outside this model's 0-2"):
        opened.check_model(24, 4)
    with pytest.raises(UserError, match="no matrix for layer 1 .it has 0, 5."):
        opened.transport(1, 8)


# --- on a runnable tiny model: the fit, and TransformerLens's readout of the same lens ----------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    from tests.helpers.models import write_hf_llama

    return write_hf_llama(tmp_path_factory.mktemp("llama") / "model", n_layers=3, with_bos=True, seed=4)


def _corpus(tmp_path: Path):
    from engine.activations.corpus import load_corpus

    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "the", "of", "x9", "brown", "fox", "zeta", "eta"]
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(words, size=3000)))
    return load_corpus(str(path))


def _engine(model: Path, tmp_path: Path):
    from engine.neuron_engine import EngineOptions, NeuronEngine

    return NeuronEngine(EngineOptions(model=str(model), device="cpu", cache_dir=tmp_path / "cache"))


def test_fit_resumes_and_equals_one_transformer_lens_fit(tiny_llama, tmp_path):
    from transformer_lens.tools.analysis import JacobianLens

    from engine.lens.fit import corpus_prompts
    from engine.settings import FitSettings

    engine = _engine(tiny_llama, tmp_path)
    corpus = _corpus(tmp_path)
    settings = FitSettings(prompts=4, max_seq_len=40, dim_batch=8)
    heard: list = []

    def stop_after_two() -> bool:
        return len([event for event in heard if event.done > event.start]) >= 2

    with pytest.raises(ScanCancelled):
        engine.fit_lens(corpus, settings, listener=heard.append, cancelled=stop_after_two)
    heard.clear()
    path = engine.fit_lens(corpus, settings, listener=heard.append)
    assert heard[0].start == 2 and heard[-1].done == 4  # resumed at the third prompt
    assert path is not None and not list(path.parent.glob("*.partial.pt"))

    bridge, tokenizer, _ = engine.activation_model()
    prompts = corpus_prompts(tokenizer, corpus, settings)
    whole = JacobianLens.fit(
        bridge,
        prompts,
        corpus="whole",
        dim_batch=8,
        max_seq_len=40,
        skip_first_positions=settings.skip_first_positions,
        show_progress=False,
    )
    fitted = open_lens_file(path)
    assert fitted.n_prompts == whole.n_prompts == 4
    for layer in whole.source_layers:
        np.testing.assert_allclose(
            fitted.matrices[layer], whole.jacobians[layer].double().numpy(), rtol=0, atol=1e-6
        )
    assert engine.fit_lens(corpus, settings) == path  # asked again: found, not fitted again
    assert engine.open_lens("jacobian") == Lens("jacobian", fitted.digest)
    engine.close()


def test_lens_read_matches_transformer_lens_readout(tiny_llama, tmp_path):
    """A neuron's direction placed in the residual stream at block l's output: TransformerLens's
    readout of it through the lens (W_U norm(J_l h)) ranks the same tokens as the scan with the
    final norm folded, and its logits are the scan's dots over the norm's RMS of J_l w."""
    from transformer_lens.tools.analysis import JacobianLens

    engine = _engine(tiny_llama, tmp_path)
    bridge, _tokenizer, _ = engine.activation_model()
    generator = torch.Generator().manual_seed(3)
    lens = JacobianLens(
        {layer: torch.eye(32) + 0.5 * torch.randn((32, 32), generator=generator) for layer in (0, 1)},
        n_prompts=1,
        d_model=32,
    )
    path = tmp_path / "lens.pt"
    lens.save(str(path), dtype=torch.float32)
    settings = ScanSettings(
        top_k=10, projection=Projection(fold_final_norm=True), lens=engine.open_lens(f"jacobian:{path}")
    )
    eps = float(bridge.cfg.eps)
    tokens = torch.tensor([[299, 40, 41, 42, 43]])
    for layer in range(3):
        result = engine.layer(layer, settings)
        w_out = engine._ensure_source().mlp_out(layer)
        transport = engine.transport(layer, settings)
        for neuron in (0, 17, 63):
            direction = torch.from_numpy(w_out[neuron].astype(np.float32))

            def place(activation, hook, direction=direction):
                activation = activation.clone()
                activation[:, -1, :] = direction
                return activation

            with bridge.hooks(fwd_hooks=[(f"blocks.{layer}.hook_out", place)]):
                read = lens.readout(bridge, tokens, layers=[layer], positions=[-1], top_k=10)
            ids = read.lens_topk_indices[layer][0].numpy()
            logits = read.lens_topk_values[layer][0].double().numpy()
            np.testing.assert_array_equal(ids, result.promote_ids[neuron])
            written = w_out[neuron].astype(np.float64)
            if transport is not None:
                written = transport @ written
            rms = np.sqrt(np.mean(written**2) + eps)
            np.testing.assert_allclose(logits * rms, result.promote_dots[neuron], rtol=2e-5)
    engine.close()
