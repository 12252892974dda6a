"""Activation evidence by brute force, from the definitions in engine.evidence: every
activation of every position (each window run alone through the plain Hugging Face model, read
with PyTorch forward hooks), fully sorted, and every rate counted directly."""

from __future__ import annotations

import numpy as np
import torch

from engine.settings import Projection
from tests.helpers.reference import reference_scores


def _modules(model, layer: int):
    """(MLP output projection, final norm, W_out [d_mlp, d_model], W_U [d_model, vocab], g, centred)."""
    gpt2 = hasattr(model, "transformer")  # Conv1D c_proj stored [d_mlp, d_model], LayerNorm
    if gpt2:
        mlp_out, norm = model.transformer.h[layer].mlp.c_proj, model.transformer.ln_f
        w_out = mlp_out.weight.detach().double().numpy()
    else:  # Linear down_proj stored [d_model, d_mlp], RMSNorm
        mlp_out, norm = model.model.layers[layer].mlp.down_proj, model.model.norm
        w_out = mlp_out.weight.detach().double().numpy().T
    unembed = model.lm_head.weight.detach().double().numpy().T
    return mlp_out, norm, w_out, unembed, norm.weight.detach().double().numpy(), gpt2


def reference_evidence(
    model, tokenizer, documents, layer, context, top_k, keep, lift_positions, max_tokens=None
):
    mlp_out, norm, w_out, unembed, g, centred = _modules(model, layer)
    ids_all, doc_all, next_all = [], [], []
    total = 0
    for number, text in enumerate(documents):
        ids = tokenizer(text)["input_ids"]
        following = ids[1:] + [-1]
        if max_tokens is not None:
            ids, following = ids[: max_tokens - total], following[: max_tokens - total]
        ids_all += ids
        next_all += following
        doc_all += [number] * len(ids)
        total += len(ids)
    activations, scales = [], []
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        mlp_out.register_forward_hook(lambda m, i, o: seen.__setitem__("act", i[0][0])),
        norm.register_forward_hook(lambda m, i, o: seen.__setitem__("resid", i[0][0])),
    ]
    start = 0
    with torch.no_grad():
        while start < total:
            stop = start
            while stop < total and doc_all[stop] == doc_all[start] and stop - start < context:
                stop += 1
            model(torch.tensor([ids_all[start:stop]]))
            activations.append(seen["act"].double().numpy())
            x = seen["resid"].double()
            if centred:
                scales.append(((x - x.mean(-1, keepdim=True)).pow(2).mean(-1) + norm.eps).sqrt().numpy())
            else:
                scales.append((x.pow(2).mean(-1) + norm.variance_epsilon).sqrt().numpy())
            start = stop
    for hook in hooks:
        hook.remove()
    acts = np.concatenate(activations)  # [positions, d_mlp]
    scale = np.concatenate(scales)
    next_ids = np.array(next_all)
    scores = reference_scores(w_out.astype(np.float32), unembed.astype(np.float32), None, Projection())
    promote = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    rows = w_out - w_out.mean(axis=1, keepdims=True) if centred else w_out
    out = {
        "top_index": [],
        "top_values": [],
        "hit_rate": [],
        "base_rate": [],
        "lift": [],
        "density": [],
        "direct_effect": [],
    }
    has_next = next_ids >= 0
    for neuron in range(acts.shape[1]):
        column = acts[:, neuron]
        order = np.lexsort((np.arange(len(column)), -column))  # activation desc, then lower index
        top = order[:keep]
        tokens = set(promote[neuron].tolist())
        in_t = np.array([n in tokens for n in next_ids])
        lifted = order[:lift_positions]
        counted = has_next[lifted]
        hit = (in_t[lifted] & counted).sum() / counted.sum() if counted.sum() else np.nan
        base = (in_t & has_next).sum() / has_next.sum()
        effect = np.mean(
            [
                column[p] / scale[p] * np.mean([(rows[neuron] * g) @ unembed[:, v] for v in promote[neuron]])
                for p in lifted
            ]
        )
        out["top_index"].append(top)
        out["top_values"].append(column[top])
        out["hit_rate"].append(hit)
        out["base_rate"].append(base)
        out["lift"].append(hit / base if base > 0 else np.nan)
        out["density"].append((column > 0).mean())
        out["direct_effect"].append(effect)
    doc = np.array(doc_all)
    starts = np.r_[0, np.flatnonzero(np.diff(doc)) + 1]
    position = np.arange(len(doc)) - np.repeat(starts, np.diff(np.r_[starts, len(doc)]))
    return {name: np.array(values) for name, values in out.items()} | {
        "doc": doc,
        "position": position,
        "token_ids": np.array(ids_all),
        "acts": acts,
    }


def assert_examples_match(got, ref: dict, lift_positions: int, rtol: float, atol: float) -> None:
    """The engine's examples against the reference's, tie-aware: an example may differ from the
    reference's at the same rank only where their activations tie within the tolerance (two code
    paths round differently, so near-equal activations may swap). Lift, rates and the direct
    effect, which depend on the set of top positions, are compared wherever the reference's top
    set is not itself decided by such a tie."""
    acts = ref["acts"]
    where = {(int(d), int(p)): i for i, (d, p) in enumerate(zip(ref["doc"], ref["position"]))}
    shown = got.doc.shape[1]
    got_index = np.vectorize(lambda d, p: where[(int(d), int(p))])(got.doc, got.position)
    expected = ref["top_values"][:, :shown]
    np.testing.assert_allclose(got.values, expected, rtol=rtol, atol=atol)
    at_got = np.take_along_axis(acts.T, got_index, 1)  # the reference's activation where the engine points
    np.testing.assert_allclose(at_got, expected, rtol=rtol, atol=atol)
    same = got_index == ref["top_index"][:, :shown]
    assert same.mean() > 0.99, f"only {same.mean():.2%} of examples in the reference's order"
    np.testing.assert_array_equal(got.token_id, ref["token_ids"][got_index])
    ordered = -np.sort(-acts, axis=0)
    if lift_positions < acts.shape[0]:
        inside, outside = ordered[lift_positions - 1], ordered[lift_positions]
        tied = np.abs(inside - outside) <= atol + rtol * np.abs(inside)
    else:
        tied = np.zeros(acts.shape[1], dtype=bool)
    assert tied.mean() < 0.05, f"{tied.sum()} neurons tie at the lift boundary: the test would say little"
    clear = ~tied
    np.testing.assert_allclose(got.hit_rate[clear], ref["hit_rate"][clear], rtol=1e-9)
    np.testing.assert_allclose(got.lift[clear], ref["lift"][clear], rtol=1e-9)
    np.testing.assert_allclose(got.direct_effect[clear], ref["direct_effect"][clear], rtol=1e-4, atol=1e-7)
