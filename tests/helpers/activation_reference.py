"""Activation evidence by brute force, from the definitions in engine.evidence: every
activation of every position (each window run alone through the plain Hugging Face model, read
with PyTorch forward hooks), fully sorted, and every rate counted directly."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from engine.settings import Projection
from tests.helpers.reference import reference_scores, top_k_ids


def _modules(model, layer: int):
    """(MLP output projection, final norm, W_out [d_mlp, d_model], W_U [d_model, vocab], g, centred,
    the gate and up projections or None)."""
    gpt2 = hasattr(model, "transformer")  # Conv1D c_proj stored [d_mlp, d_model], LayerNorm
    if gpt2:
        mlp = model.transformer.h[layer].mlp
        mlp_out, norm = mlp.c_proj, model.transformer.ln_f
        w_out = mlp_out.weight.detach().double().numpy()
        gate = up = None
    else:  # Linear down_proj stored [d_model, d_mlp], RMSNorm
        mlp = model.model.layers[layer].mlp
        mlp_out, norm = mlp.down_proj, model.model.norm
        w_out = mlp_out.weight.detach().double().numpy().T
        gate, up = mlp.gate_proj, mlp.up_proj
    unembed = model.lm_head.weight.detach().double().numpy().T
    return mlp_out, norm, w_out, unembed, norm.weight.detach().double().numpy(), gpt2, gate, up


def _ranked(scores: np.ndarray) -> np.ndarray:
    """Positions with a finite score, by score descending, then lower index (a full sort)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[np.isfinite(scores[order])]


def _entropy(forms: list[int]) -> float:
    counts = Counter(forms).values()
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts) if total else math.nan


def reference_evidence(
    model, tokenizer, documents, layer, context, top_k, keep, lift_positions, max_tokens=None, forms=None
):
    """Both poles (and, for a gated MLP, the four sign cases) of every neuron of ``layer``, from
    every activation of the corpus fully sorted. ``forms``: each token's form number (for the
    input forms and entropy), or None to leave them out."""
    mlp_out, norm, w_out, unembed, g, centred, gate_proj, up_proj = _modules(model, layer)
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
    activations, scales, gates, ups = [], [], [], []
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        mlp_out.register_forward_hook(lambda m, i, o: seen.__setitem__("act", i[0][0])),
        norm.register_forward_hook(lambda m, i, o: seen.__setitem__("resid", i[0][0])),
    ]
    if gate_proj is not None:
        hooks.append(gate_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("gate", o[0])))
        hooks.append(up_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("up", o[0])))
    start = 0
    with torch.no_grad():
        while start < total:
            stop = start
            while stop < total and doc_all[stop] == doc_all[start] and stop - start < context:
                stop += 1
            model(torch.tensor([ids_all[start:stop]]))
            activations.append(seen["act"].double().numpy())
            if gate_proj is not None:
                gates.append(seen["gate"].double().numpy())
                ups.append(seen["up"].double().numpy())
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
    token_ids = np.array(ids_all)
    scores = reference_scores(w_out.astype(np.float32), unembed.astype(np.float32), None, Projection())
    token_sets = {  # ties: the lower token id first, as the scan ranks them
        "positive": top_k_ids(scores, top_k),
        "negative": top_k_ids(-scores, top_k),
    }
    rows = w_out - w_out.mean(axis=1, keepdims=True) if centred else w_out
    has_next = next_ids >= 0
    out = {}
    for pole, sign in (("positive", 1.0), ("negative", -1.0)):
        fields = {
            name: []
            for name in ("top_index", "top_values", "hit_rate", "base_rate", "lift", "density")
            + ("direct_effect", "input_forms", "input_entropy", "scores")
        }
        for neuron in range(acts.shape[1]):
            column = acts[:, neuron]
            pole_scores = np.where(sign * column > 0, sign * column, -np.inf)
            order = _ranked(pole_scores)
            tokens = set(token_sets[pole][neuron].tolist())
            in_t = np.array([n in tokens for n in next_ids])
            lifted = order[:lift_positions]
            counted = has_next[lifted]
            hit = (in_t[lifted] & counted).sum() / counted.sum() if counted.sum() else np.nan
            base = (in_t & has_next).sum() / has_next.sum()
            effect = (
                np.mean(
                    [
                        column[p]
                        / scale[p]
                        * np.mean([(rows[neuron] * g) @ unembed[:, v] for v in token_sets[pole][neuron]])
                        for p in lifted
                    ]
                )
                if len(lifted)
                else 0.0
            )
            fired = [] if forms is None else [int(forms[t]) for t in token_ids[lifted] if forms[t] >= 0]
            fields["top_index"].append(
                np.pad(order[:keep], (0, keep - len(order[:keep])), constant_values=-1)
            )
            fields["top_values"].append(
                np.pad(column[order[:keep]], (0, keep - len(order[:keep])), constant_values=np.nan)
            )
            fields["hit_rate"].append(hit)
            fields["base_rate"].append(base)
            fields["lift"].append(hit / base if base > 0 else np.nan)
            fields["density"].append((sign * column > 0).mean())
            fields["direct_effect"].append(effect)
            fields["input_forms"].append(len(set(fired)))
            fields["input_entropy"].append(_entropy(fired))
            fields["scores"].append(pole_scores)
        out[pole] = {name: np.array(values) for name, values in fields.items()}
        out[pole]["scores"] = out[pole]["scores"].T  # [positions, d_mlp]
    if gate_proj is not None:
        gate, up = np.concatenate(gates), np.concatenate(ups)
        case_of = 2 * (gate <= 0) + (up <= 0)
        out["cases"] = {
            "shares": np.stack([(case_of == c).mean(axis=0) for c in range(4)], axis=1),
            "case_of": case_of,
            "order": [
                [_ranked(np.where(case_of[:, n] == c, np.abs(acts[:, n]), -np.inf)) for c in range(4)]
                for n in range(acts.shape[1])
            ],
        }
    doc = np.array(doc_all)
    starts = np.r_[0, np.flatnonzero(np.diff(doc)) + 1]
    position = np.arange(len(doc)) - np.repeat(starts, np.diff(np.r_[starts, len(doc)]))
    return out | {"doc": doc, "position": position, "token_ids": token_ids, "acts": acts}


def assert_examples_match(got, ref: dict, lift_positions: int, rtol: float, atol: float) -> None:
    """One pole's examples (``got``: a PoleEvidence) against the reference's (``ref``: the
    reference's entry for that pole, with its corpus fields), tie-aware: an example may differ from
    the reference's at the same rank only where their activations tie within the tolerance (two
    code paths round differently, so near-equal activations may swap). Lift, rates and the direct
    effect, which depend on the set of top positions, are compared wherever the reference's top
    set is not itself decided by such a tie."""
    scores = ref["scores"]  # [positions, d_mlp]: |activation| in the pole, -inf outside it
    acts = ref["acts"]
    where = {(int(d), int(p)): i for i, (d, p) in enumerate(zip(ref["doc"], ref["position"]))}
    shown = got.doc.shape[1]
    expected_index = ref["top_index"][:, :shown]
    np.testing.assert_array_equal(got.doc < 0, expected_index < 0)  # as many examples as the pole has
    filled = got.doc >= 0
    got_index = np.where(
        filled, np.vectorize(lambda d, p: where.get((int(d), int(p)), -1))(got.doc, got.position), -1
    )
    expected = ref["top_values"][:, :shown]
    np.testing.assert_allclose(got.values[filled], expected[filled], rtol=rtol, atol=atol)
    at_got = np.take_along_axis(acts.T, np.maximum(got_index, 0), 1)  # where the engine points
    np.testing.assert_allclose(at_got[filled], expected[filled], rtol=rtol, atol=atol)
    same = (got_index == expected_index)[filled]
    assert same.mean() > 0.99, f"only {same.mean():.2%} of examples in the reference's order"
    np.testing.assert_array_equal(got.token_id[filled], ref["token_ids"][got_index[filled]])
    ordered = -np.sort(-scores, axis=0)
    if lift_positions < scores.shape[0]:
        inside, outside = ordered[lift_positions - 1], ordered[lift_positions]
        with np.errstate(invalid="ignore"):  # -inf - -inf: poles with fewer positions than that
            tied = np.isfinite(outside) & (np.abs(inside - outside) <= atol + rtol * np.abs(inside))
    else:
        tied = np.zeros(scores.shape[1], dtype=bool)
    assert tied.mean() < 0.05, f"{tied.sum()} neurons tie at the lift boundary: the test would say little"
    clear = ~tied
    np.testing.assert_allclose(got.hit_rate[clear], ref["hit_rate"][clear], rtol=1e-9)
    np.testing.assert_allclose(got.lift[clear], ref["lift"][clear], rtol=1e-9)
    np.testing.assert_allclose(got.direct_effect[clear], ref["direct_effect"][clear], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(got.input_forms[clear], ref["input_forms"][clear])
    np.testing.assert_allclose(got.input_entropy[clear], ref["input_entropy"][clear], rtol=1e-9)


def assert_cases_match(got, ref: dict, rtol: float, atol: float) -> None:
    """The four sign cases (``got``: a CaseEvidence): shares exactly, examples tie-aware."""
    cases = ref["cases"]
    np.testing.assert_array_equal(got.shares, cases["shares"])
    acts = ref["acts"]
    where = {(int(d), int(p)): i for i, (d, p) in enumerate(zip(ref["doc"], ref["position"]))}
    same = total = 0
    for neuron in range(got.doc.shape[0]):
        for case in range(4):
            order = cases["order"][neuron][case][: got.doc.shape[2]]
            filled = got.doc[neuron, case] >= 0
            assert filled.sum() == len(order), (neuron, case)
            index = [
                where[(int(d), int(p))]
                for d, p in zip(got.doc[neuron, case][filled], got.position[neuron, case][filled])
            ]
            assert all(cases["case_of"][i, neuron] == case for i in index)  # each example is of its case
            np.testing.assert_allclose(
                got.values[neuron, case][filled], acts[order, neuron], rtol=rtol, atol=atol
            )
            np.testing.assert_allclose(acts[index, neuron], acts[order, neuron], rtol=rtol, atol=atol)
            same += int((np.array(index) == order).sum())
            total += len(order)
    assert total and same / total > 0.99, f"only {same}/{total} case examples in the reference's order"
