"""The weight side of whole neurons against float64 computations from the definitions: the input
side (engine.data.inputs) on Llama-, Gemma- and GPT-2-style checkpoints through both loaders, and the
"one token or a concept?" numbers (engine.scan.concepts)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.inputs import IO_CLASSES, io_classes
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.scan.forms import normalise_form
from engine.settings import Projection, ScanSettings
from tests.helpers.models import random_hf_model, write_hf_checkpoint


def _unit(x: np.ndarray) -> np.ndarray:
    """Unit rows; a zero row (Gemma's padding embedding) stays zero, so its cosines are 0."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def reference_inputs(model, kind: str, layer: int):
    """(rows {name: [d_mlp, d_model]} as the residual sees them, W_E, w_out) in float64, straight
    from the Hugging Face modules."""
    double = lambda t: t.detach().double().numpy()  # noqa: E731
    if kind == "gpt2":
        block = model.transformer.h[layer]
        rows = {"in": double(block.mlp.c_fc.weight).T}  # Conv1D: [d_model, d_mlp]
        gamma, embed = double(block.ln_2.weight), double(model.transformer.wte.weight)
        w_out = double(block.mlp.c_proj.weight)
        rows = {name: (w * gamma) - (w * gamma).mean(axis=1, keepdims=True) for name, w in rows.items()}
        w_out = w_out - w_out.mean(axis=1, keepdims=True)
    else:
        block = model.model.layers[layer]
        rows = {"gate": double(block.mlp.gate_proj.weight), "up": double(block.mlp.up_proj.weight)}
        weight = block.post_attention_layernorm.weight.detach().float()
        gamma = (weight + 1.0 if kind == "gemma" else weight).double().numpy()  # Gemma: 1 + w, in float32
        embed, w_out = double(model.model.embed_tokens.weight), double(block.mlp.down_proj.weight).T
        rows = {name: w * gamma for name, w in rows.items()}
    return rows, embed, w_out


@pytest.mark.parametrize("loader", ["stream", "bridge"])
@pytest.mark.parametrize("kind", ["llama", "gemma", "gpt2"])
def test_the_input_side_equals_a_float64_computation_from_the_definition(kind, loader, tmp_path):
    folder = write_hf_checkpoint(tmp_path / kind, kind, seed=3)
    model = random_hf_model(kind, seed=3)  # the same seed: the same weights
    engine = NeuronEngine(EngineOptions(model=str(folder), loader=loader, cache_dir=tmp_path / "cache"))
    k = 7
    for layer in range(engine.info.n_layers):
        got = engine.inputs(layer, ScanSettings(top_k=k))
        rows, embed, w_out = reference_inputs(model, kind, layer)
        assert got.rows == tuple(rows)
        for index, row in enumerate(rows.values()):
            cos = _unit(row) @ _unit(embed).T  # [d_mlp, d_vocab]
            order = np.argsort(-cos, axis=1, kind="stable")[:, :k]
            np.testing.assert_array_equal(got.plus_ids[index], order)
            np.testing.assert_allclose(got.plus_cos[index], np.take_along_axis(cos, order, 1), rtol=1e-9)
            low = np.argsort(cos, axis=1, kind="stable")[:, :k]
            np.testing.assert_array_equal(got.minus_ids[index], low)
            np.testing.assert_allclose(got.minus_cos[index], np.take_along_axis(cos, low, 1), rtol=1e-9)
            expected_out = np.einsum("nd,nd->n", _unit(row), _unit(w_out))
            np.testing.assert_allclose(got.cos_out[index], expected_out, rtol=1e-9, atol=1e-12)
        if kind != "gpt2":
            gate_up = np.einsum("nd,nd->n", _unit(rows["gate"]), _unit(rows["up"]))
            np.testing.assert_allclose(got.cos_gate_up, gate_up, rtol=1e-9, atol=1e-12)
    # Cached: a second engine reads the same bytes without the weights.
    again = NeuronEngine(EngineOptions(model=str(folder), loader=loader, cache_dir=tmp_path / "cache"))
    assert (
        again.inputs(0, ScanSettings(top_k=k)).to_bytes()
        == engine.inputs(0, ScanSettings(top_k=k)).to_bytes()
    )
    assert again._source is None


def test_io_classes_follow_gerstner_and_schuetze():
    """Hand-built cosines (lo, go, gl) for each class, and the refactoring that flips w_in, w_out."""
    cases = [
        ((0.8, 0.7, 0.9), "enrichment"),
        ((0.8, 0.7, 0.1), "atypical enrichment"),
        ((0.8, 0.1, 0.2), "conditional enrichment"),
        ((0.8, 0.1, 0.9), "atypical conditional enrichment"),
        ((0.1, 0.8, 0.2), "proportional change"),
        ((0.1, 0.8, 0.9), "atypical proportional change"),
        ((0.1, 0.2, 0.9), "orthogonal output"),
        ((-0.8, 0.7, -0.9), "atypical depletion"),  # refactored: gl 0.9, go -0.7 -> copysign -0.9
        ((-0.8, -0.7, 0.9), "depletion"),
        ((-0.8, 0.7, 0.2), "atypical depletion"),
        ((-0.8, 0.1, 0.2), "conditional depletion"),
        ((-0.8, 0.1, 0.9), "atypical conditional depletion"),
    ]
    lo, go, gl = (np.array([c[0][i] for c in cases]) for i in range(3))
    got = [IO_CLASSES[i] for i in io_classes(lo, go, gl)]
    # (-0.8, 0.7, -0.9): refactoring flips (gl, go) to (0.9, -0.7): copysign(0.9, -0.7) = -0.9 < -t
    expected = [name for _, name in cases]
    expected[7] = "depletion"
    assert got == expected
    # A plain MLP: lo alone.
    plain = [IO_CLASSES[i] for i in io_classes(np.array([0.6, -0.6, 0.2]), None, None)]
    assert plain == ["enrichment", "depletion", "orthogonal output"]


def test_concept_numbers_equal_a_brute_force_count(tiny_llama_dir, tmp_path):
    from engine.scan.concepts import COHERENCE_SAMPLES, COHERENCE_SEED, DIRECTION_SAMPLES

    settings = ScanSettings(top_k=6, projection=Projection(True, True, False))
    engine = NeuronEngine(EngineOptions(model=str(tiny_llama_dir), device="cpu", cache_dir=tmp_path / "c"))
    result = engine.layer(1, settings)
    vocab = engine.vocabulary
    unembed = engine._unembed(settings)
    import torch

    def column(v: int) -> np.ndarray:
        return unembed.exact_columns(torch.tensor([v]))[0].numpy()

    def mean_cos(ids) -> float:
        unit = _unit(np.stack([column(int(v)) for v in ids]))
        gram = unit @ unit.T
        return float((gram.sum() - np.trace(gram)) / (len(ids) * (len(ids) - 1)))

    rng = np.random.default_rng(COHERENCE_SEED)
    null = np.array(
        [mean_cos(rng.choice(unembed.d_vocab, size=6, replace=False)) for _ in range(COHERENCE_SAMPLES)]
    )
    # The stricter null: the top-k tokens of seeded random directions, scored in float64.
    columns = np.stack([column(v) for v in range(unembed.d_vocab)])  # [d_vocab, d_model]
    generator = torch.Generator().manual_seed(COHERENCE_SEED)
    directions = torch.randn((DIRECTION_SAMPLES, unembed.d_model), generator=generator, dtype=torch.float64)
    scores = directions.numpy() @ columns.T
    top = [sorted(range(unembed.d_vocab), key=lambda v, row=row: (-row[v], v))[:6] for row in scores]
    directed = np.array([mean_cos(ids) for ids in top])
    for neuron in range(0, result.d_mlp, 7):
        for prefix in ("promote", "suppress"):
            ids = getattr(result, f"{prefix}_ids")[neuron]
            dots = np.abs(getattr(result, f"{prefix}_dots")[neuron])
            forms = [normalise_form(vocab.token_bytes(int(v))) for v in ids]
            kept = [f for f in forms if f is not None]
            assert getattr(result, f"{prefix}_forms")[neuron] == len(set(kept))
            if kept:
                best = max(
                    set(kept), key=lambda f: (kept.count(f), sum(d for g, d in zip(forms, dots) if g == f))
                )
                share = sum(d for g, d in zip(forms, dots) if g == best) / dots.sum()
                assert getattr(result, f"{prefix}_form_share")[neuron] == pytest.approx(share, rel=1e-12)
            coherence = mean_cos(ids)
            assert getattr(result, f"{prefix}_coherence")[neuron] == pytest.approx(
                coherence, rel=1e-9, abs=1e-12
            )
            z = (coherence - null.mean()) / null.std()
            assert getattr(result, f"{prefix}_coherence_z")[neuron] == pytest.approx(z, rel=1e-6, abs=1e-9)
            z = (coherence - directed.mean()) / directed.std()
            assert getattr(result, f"{prefix}_coherence_dir_z")[neuron] == pytest.approx(
                z, rel=1e-6, abs=1e-9
            )


def test_the_direction_nulls_running_top_k_equals_one_stable_sort_of_every_score():
    """Chunk by chunk (any chunk size), the top-k ids equal a stable sort of all the scores: ties
    (many here: small whole numbers) go to the lower id."""
    import torch

    from engine.scan.concepts import top_token_ids

    rng = np.random.default_rng(5)
    columns = torch.from_numpy(rng.integers(-3, 4, size=(50, 4)).astype(np.float64))
    directions = torch.from_numpy(rng.integers(-2, 3, size=(9, 4)).astype(np.float64))
    scores = directions.numpy() @ columns.numpy().T
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :6]
    for chunk in (1, 7, 50, 64):
        got = top_token_ids(directions, 50, 6, lambda ids: columns[ids], chunk=chunk)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "raw, form",
    [
        (b" Paris", "paris"),
        (b"Paris", "paris"),
        (b"PARIS,", "paris"),
        ("ĠParis".encode(), "paris"),
        ("▁Paris".encode(), "paris"),
        (b" ", None),
        (b",", None),
        (b'"(', None),
        (b"", None),
        (b"\xe2\x80", "<0xE2><0x80>"),  # a byte piece of a longer character is its own form
        (b" \xe2", "<0xE2>"),
        ("«Straße»".encode(), "strasse"),  # casefold
        (b"don't", "don't"),  # inner punctuation stays
        (b"...", None),
        (b"<|endoftext|>", "<|endoftext|>"),  # < | > are symbols, not punctuation
        ("Ġ".encode(), None),
        (b"  x", "x"),  # one marker dropped, then whitespace stripped
    ],
)
def test_form_normalisation_on_hostile_tokens(raw, form):
    assert normalise_form(raw) == form
