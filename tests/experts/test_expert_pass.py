"""The corpus pass over layers of experts against the model run by transformers itself: which
experts its own router chose at each position (``routed``), and each expert neuron's activation
where it ran, recomputed in float64 from the files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.activations.documents import Corpus
from engine.activations.job import ActivationJob
from engine.activations.windows import tokenize_corpus
from engine.data.experts import SHARED
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tests.engine.test_activations import random_documents
from tests.helpers.moe_models import write_moe_checkpoint

SETTINGS = ActivationSettings(context=24, examples=5, lift_positions=12, batch_tokens=72)
LAYER = 1


def _reference_run(folder, tokenizer, corpus):
    """Each position's chosen experts and the MLP's input, from transformers' own model (float64),
    over the pass's own windows."""
    from transformers import AutoModelForCausalLM

    tokenized = tokenize_corpus(
        corpus,
        lambda text: tokenizer(text)["input_ids"],
        SETTINGS.context,
        SETTINGS.max_tokens,
        encode_more=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
    )
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, experts_implementation="eager")
    model = model.eval()
    block = model.model.layers[LAYER].mlp
    router = getattr(block, "gate", None) or block.router
    seen: dict[str, list] = {"index": [], "hidden": [], "weights": []}
    # The router returns (logits, weights, chosen experts); the block's input is the MLP's input.
    router.register_forward_hook(
        lambda m, a, out: seen["index"].append(out[-1].reshape(-1, out[-1].shape[-1]))
    )
    router.register_forward_hook(
        lambda m, a, out: seen["weights"].append(out[1].reshape(-1, out[1].shape[-1]))
    )
    block.register_forward_pre_hook(lambda m, a: seen["hidden"].append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        for start, stop in tokenized.windows:
            model(torch.from_numpy(tokenized.token_ids[start:stop])[None])
    found = {name: torch.cat(parts).numpy() for name, parts in seen.items()}
    return tokenized, found, model


def _tensor(folder, name: str) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")[name].astype(np.float64)


def _expert_activation(kind, folder, expert, hidden, config):
    """An expert's neurons' activations [n, d_expert] from the files' weights, in float64."""
    from safetensors.numpy import load_file

    tensors = load_file(folder / "model.safetensors")
    base = f"model.layers.{LAYER}.mlp"
    if kind == "gpt_oss":  # fused, interleaved gate/up with biases, clamped GLU
        gate_up = hidden @ tensors[f"{base}.experts.gate_up_proj"][expert].astype(np.float64)
        gate_up += tensors[f"{base}.experts.gate_up_proj_bias"][expert]
        gate = np.minimum(gate_up[:, 0::2], config.swiglu_limit)
        up = np.clip(gate_up[:, 1::2], -config.swiglu_limit, config.swiglu_limit)
        return (up + 1) * gate / (1 + np.exp(-gate * config.swiglu_alpha))
    name = f"{base}.shared_expert" if expert == SHARED else f"{base}.experts.{expert}"
    gate = hidden @ tensors[f"{name}.gate_proj.weight"].T.astype(np.float64)
    up = hidden @ tensors[f"{name}.up_proj.weight"].T.astype(np.float64)
    return gate / (1 + np.exp(-gate)) * up  # SiLU(gate) * up


@pytest.mark.parametrize("kind", ["qwen2_moe", "gpt_oss"])
def test_routed_shares_and_activations_are_the_models_own(kind, tmp_path):
    folder = write_moe_checkpoint(tmp_path / kind, kind, seed=5)
    engine = NeuronEngine(EngineOptions(model=str(folder), device="cpu", cache_dir=tmp_path / "cache"))
    corpus = Corpus("random", random_documents(3))
    got = ActivationJob(engine, [LAYER], corpus, SETTINGS, ScanSettings(top_k=20)).run()[LAYER]
    _, tokenizer, _ = engine.activation_model(None)
    tokenized, seen, model = _reference_run(folder, tokenizer, corpus)
    index, hidden, weights = seen["index"], seen["hidden"], seen["weights"]
    experts = engine.info.experts(LAYER)
    n = tokenized.n_positions
    assert got.n_positions == n == len(index)
    where = {(int(d), int(p)): i for i, (d, p) in enumerate(zip(tokenized.doc, tokenized.position))}
    for group in experts.groups:
        ran = np.ones(n, bool) if group.expert == SHARED else (index == group.expert).any(axis=1)
        np.testing.assert_allclose(got.routed[group.start : group.stop], ran.mean(), rtol=0, atol=1.5 / n)
        # The mean weight the model gave the expert's output where it ran.
        if group.expert == SHARED:  # Qwen2-MoE's sigmoid gate on the shared expert
            gate_weight = _tensor(folder, f"model.layers.{LAYER}.mlp.shared_expert_gate.weight")
            gate = (1 / (1 + np.exp(-(hidden @ gate_weight.T))))[:, 0].mean()
        else:
            gate = weights[index == group.expert].mean()
        np.testing.assert_allclose(got.gate_mean[group.start : group.stop], gate, rtol=2e-3)
        acts = _expert_activation(kind, folder, group.expert, hidden[ran], model.config)  # [routed, size]
        full = np.zeros((n, group.size))
        full[ran] = acts
        for local in range(group.size):
            neuron = group.start + local
            fired = (full[ran, local] > 0).sum()
            assert abs(got.positive.density[neuron] - fired / ran.sum()) <= 1.5 / ran.sum()
            for rank in range(SETTINGS.examples):  # the strongest examples, at positions it ran
                doc = got.positive.doc[neuron, rank]
                if doc < 0:
                    break
                at = where[(int(doc), int(got.positive.position[neuron, rank]))]
                assert ran[at]
                value = got.positive.values[neuron, rank]
                np.testing.assert_allclose(value, full[at, local], rtol=1e-4, atol=1e-5)
            found = got.positive.values[neuron][got.positive.doc[neuron] >= 0]
            strongest = np.sort(full[:, local])[::-1][: len(found)]
            np.testing.assert_allclose(found, strongest, rtol=1e-4, atol=1e-5)


def test_the_probe_of_a_layer_of_experts_reads_the_same_activations(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = write_moe_checkpoint(tmp_path / "qwen2", "qwen2_moe", seed=6)
    engine = NeuronEngine(EngineOptions(model=str(folder), device="cpu", cache_dir=tmp_path / "cache"))
    text = "a probe, of experts.\nand more"
    firing = engine.probe_layer(text, LAYER)
    ids = torch.tensor([firing.token_ids.tolist()])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, experts_implementation="eager")
    seen: dict[str, torch.Tensor] = {}
    block = model.model.layers[LAYER].mlp
    block.gate.register_forward_hook(lambda m, a, out: seen.__setitem__("index", out[-1]))
    block.register_forward_pre_hook(lambda m, a: seen.__setitem__("hidden", a[0][0]))
    with torch.no_grad():
        model(ids)
    index, hidden = seen["index"].numpy(), seen["hidden"].numpy()
    experts = engine.info.experts(LAYER)
    assert firing.activations.shape == (ids.shape[1], experts.width)
    for group in experts.groups:
        ran = np.ones(len(index), bool) if group.expert == SHARED else (index == group.expert).any(axis=1)
        expected = np.zeros((len(index), group.size))
        expected[ran] = _expert_activation("qwen2_moe", folder, group.expert, hidden[ran], model.config)
        np.testing.assert_allclose(
            firing.activations[:, group.start : group.stop], expected, rtol=1e-4, atol=1e-5
        )
