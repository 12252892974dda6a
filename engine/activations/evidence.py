"""The evidence of a finished corpus pass, computed from its merged per-neuron state, by the
definitions in ``engine.data.evidence`` (everything in float64)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.activations.attribution_state import FIXED_POINT
from engine.activations.final_readout import through_final_norm
from engine.activations.state import LayerActivationState
from engine.activations.windows import TokenizedCorpus
from engine.data.evidence import (
    CASE_SIGNS,
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    CaseEvidence,
    LayerActivations,
    PoleEvidence,
)
from engine.scan.forms import distinct_forms, form_entropy


def direct_effect_weights(
    w_out: np.ndarray,
    unembed: np.ndarray,
    norm_weight: np.ndarray | None,
    centred_norm: bool,
    token_ids: np.ndarray,
) -> np.ndarray:
    """Per neuron, the mean over v in its ``token_ids`` row of (W_out[i] ⊙ g) · W_U[:, v], in float64."""
    tokens = unembed.T  # [d_vocab, d_model], a view: only the gathered columns are widened
    weight = None if norm_weight is None else norm_weight.astype(np.float64)
    out = np.empty(w_out.shape[0])
    for start in range(0, w_out.shape[0], 256):  # bounded memory whatever the model's width
        rows = through_final_norm(w_out[start : start + 256].astype(np.float64), weight, centred_norm)
        columns = tokens[token_ids[start : start + 256]].astype(np.float64)  # [n, k, d_model]
        out[start : start + 256] = np.einsum("nd,nkd->n", rows, columns) / token_ids.shape[1]
    return out


@dataclass
class CorpusFacts:
    """What every layer's evidence reads of the tokenized corpus and the final norm's scales."""

    tokenized: TokenizedCorpus
    scales: np.ndarray  # [positions] float64
    next_counts: np.ndarray  # [d_vocab] how often each token is some position's next token
    forms: np.ndarray  # [d_vocab] int32 form number of each token (engine.scan.forms), -1 for none

    def context(self, index: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Context ids [..., BEFORE + 1 + AFTER] around global ``index`` (valid where ``found``)."""
        tokenized = self.tokenized
        n = tokenized.n_positions
        shown = index[..., None] + np.arange(-CONTEXT_BEFORE, CONTEXT_AFTER + 1)
        inside = (shown >= 0) & (shown < n) & found[..., None]
        shown = np.clip(shown, 0, n - 1)
        inside &= tokenized.doc[shown] == tokenized.doc[index[..., None]]
        return np.where(inside, tokenized.token_ids[shown], -1).astype(np.int32)


def pole_evidence(
    values: np.ndarray,
    index: np.ndarray,
    count: np.ndarray,
    facts: CorpusFacts,
    token_ids: np.ndarray,
    effect_weights: np.ndarray,
    examples: int,
    lift_positions: int,
    attr_sum: np.ndarray,
) -> PoleEvidence:
    """One pole's evidence from its top list: ``values`` the signed activations [d_mlp, keep]
    (empty slots anywhere non-finite), ``index`` their global indices (-1: empty); ``count`` the
    pole's positions and ``attr_sum`` their attributions' sum in units of 2^-24."""
    tokenized = facts.tokenized
    d_mlp = values.shape[0]
    found = index >= 0
    safe = np.where(found, index, 0)
    next_id = np.where(found, tokenized.next_ids[safe], -1)

    # Rates: the top lift_positions examples, and the whole corpus through next-token counts.
    top = slice(0, lift_positions)
    in_t = (next_id[:, top, None] == token_ids[:, None, :]).any(axis=2)
    with_next = next_id[:, top] >= 0
    hits = (in_t & with_next).sum(axis=1)
    counted = with_next.sum(axis=1)
    hit_rate = np.divide(hits, counted, out=np.full(d_mlp, np.nan), where=counted > 0)
    total_with_next = int(facts.next_counts.sum())
    base_rate = facts.next_counts[token_ids].sum(axis=1) / max(total_with_next, 1)
    lift = np.divide(hit_rate, base_rate, out=np.full(d_mlp, np.nan), where=base_rate > 0)

    shown = found[:, top]
    activation = np.where(shown, values[:, top].astype(np.float64), 0.0)
    scale = np.where(shown, facts.scales[safe[:, top]], 1.0)
    per_example = activation / scale
    direct_effect = effect_weights * per_example.sum(axis=1) / np.maximum(shown.sum(axis=1), 1)

    firing = np.where(shown, tokenized.token_ids[safe[:, top]], -1)
    firing_forms = np.where(shown, facts.forms[np.maximum(firing, 0)], -1)
    token_id = np.where(found, tokenized.token_ids[safe], -1)
    return PoleEvidence(
        values=np.where(found, values, 0.0).astype(np.float32),
        doc=np.where(found, tokenized.doc[safe], -1).astype(np.int32),
        position=np.where(found, tokenized.position[safe], -1).astype(np.int32),
        token_id=token_id.astype(np.int32),
        next_id=next_id.astype(np.int32),
        context_ids=facts.context(safe[:, :examples], found[:, :examples]),
        density=count.astype(np.float64) / tokenized.n_positions,
        hit_rate=hit_rate,
        base_rate=base_rate,
        lift=lift,
        direct_effect=direct_effect,
        input_forms=distinct_forms(firing_forms),
        input_entropy=form_entropy(firing_forms),
        attr_mean=np.divide(attr_sum / FIXED_POINT, count, out=np.full(d_mlp, np.nan), where=count > 0),
    )


def case_evidence(state: LayerActivationState, facts: CorpusFacts, examples: int) -> CaseEvidence:
    tokenized = facts.tokenized
    d_mlp = state.d_mlp
    lists = state.lists["cases"]
    magnitude = lists.values.cpu().numpy().reshape(4, d_mlp, -1)[:, :, :examples]
    index = lists.index.cpu().numpy().reshape(4, d_mlp, -1)[:, :, :examples]
    found = index >= 0
    safe = np.where(found, index, 0)
    signs = np.asarray(CASE_SIGNS)[:, None, None]
    values = np.where(found & (magnitude > 0), signs * magnitude, 0.0)
    counts = state.counts["cases"].cpu().numpy().astype(np.float64)  # [4, d_mlp]
    return CaseEvidence(
        shares=(counts / tokenized.n_positions).T.copy(),
        values=values.transpose(1, 0, 2).astype(np.float32),
        doc=np.where(found, tokenized.doc[safe], -1).transpose(1, 0, 2).astype(np.int32),
        position=np.where(found, tokenized.position[safe], -1).transpose(1, 0, 2).astype(np.int32),
        token_id=np.where(found, tokenized.token_ids[safe], -1).transpose(1, 0, 2).astype(np.int32),
        context_ids=facts.context(safe, found).transpose(1, 0, 2, 3).copy(),
    )


def layer_evidence(
    layer: int,
    state: LayerActivationState,
    act_hist_top: int,
    facts: CorpusFacts,
    promote_ids: np.ndarray,
    suppress_ids: np.ndarray,
    promote_weights: np.ndarray,
    suppress_weights: np.ndarray,
    examples: int,
    lift_positions: int,
) -> LayerActivations:
    """Turn a finished pass's state into the layer's evidence (everything in float64)."""
    positive, negative = state.lists["positive"], state.lists["negative"]
    counts = {name: count.cpu().numpy() for name, count in state.counts.items() if name != "hist_counts"}
    n_positions = max(facts.tokenized.n_positions, 1)
    routed = counts["routed"].astype(np.float64) if "routed" in counts else None
    found = LayerActivations(
        layer=layer,
        n_positions=facts.tokenized.n_positions,
        positive=pole_evidence(
            positive.values.cpu().numpy(),
            positive.index.cpu().numpy(),
            counts["positive"],
            facts,
            promote_ids,
            promote_weights,
            examples,
            lift_positions,
            counts["attr_pos_sum"],
        ),
        negative=pole_evidence(
            -negative.values.cpu().numpy(),  # kept as -activation: the activations are its negation
            negative.index.cpu().numpy(),
            counts["negative"],
            facts,
            suppress_ids,
            suppress_weights,
            examples,
            lift_positions,
            counts["attr_neg_sum"],
        ),
        cases=case_evidence(state, facts, examples) if state.gated else None,
        act_hist=state.histogram(),
        act_hist_top=int(act_hist_top),
        examples=examples,
        lift_positions=lift_positions,
        attr_top1=counts["attr_top1"].astype(np.float64) / n_positions,
        attr_dominant=float(counts["attr_dominant"][0]) / n_positions,
        routed=None if routed is None else routed / n_positions,
        gate_mean=None if routed is None else _share(counts["gate_sum"] / FIXED_POINT, routed),
        explained_variance=state.explained_variance(),
    )
    if routed is None:
        return found
    # In a layer of experts a neuron fires only where its expert runs: its density is a share of
    # those positions (NaN for an expert the corpus never reached).
    return replace(
        found,
        positive=replace(found.positive, density=_share(counts["positive"], routed)),
        negative=replace(found.negative, density=_share(counts["negative"], routed)),
    )


def _share(count: np.ndarray, routed: np.ndarray) -> np.ndarray:
    return np.divide(count.astype(np.float64), routed, out=np.full(routed.shape, np.nan), where=routed > 0)
