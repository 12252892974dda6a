"""The evidence of a finished corpus pass, computed from its merged per-neuron state, by the
definitions in ``engine.evidence`` (everything in float64)."""

from __future__ import annotations

import numpy as np

from engine.evidence import CONTEXT_AFTER, CONTEXT_BEFORE, LayerActivations


def direct_effect_weights(
    w_out: np.ndarray,
    unembed: np.ndarray,
    norm_weight: np.ndarray | None,
    centred_norm: bool,
    promote_ids: np.ndarray,
) -> np.ndarray:
    """Per neuron, the mean over v in T_i of (W_out[i] ⊙ g) · W_U[:, v], in float64."""
    tokens = unembed.T  # [d_vocab, d_model], a view: only the gathered columns are widened
    out = np.empty(w_out.shape[0])
    for start in range(0, w_out.shape[0], 256):  # bounded memory whatever the model's width
        rows = w_out[start : start + 256].astype(np.float64)
        if centred_norm:
            rows = rows - rows.mean(axis=1, keepdims=True)
        if norm_weight is not None:
            rows = rows * norm_weight.astype(np.float64)
        columns = tokens[promote_ids[start : start + 256]].astype(np.float64)  # [n, k, d_model]
        out[start : start + 256] = np.einsum("nd,nkd->n", rows, columns) / promote_ids.shape[1]
    return out


def evidence(
    layer: int,
    state_values: np.ndarray,
    state_index: np.ndarray,
    positive: np.ndarray,
    act_hist: np.ndarray,
    act_hist_top: int,
    tokenized,
    scales: np.ndarray,
    promote_ids: np.ndarray,
    effect_weights: np.ndarray,
    d_vocab: int,
    examples: int,
    lift_positions: int,
) -> LayerActivations:
    """Turn a finished pass's state into the layer's evidence (everything in float64)."""
    d_mlp = state_values.shape[0]
    found = state_index >= 0
    safe = np.where(found, state_index, 0)
    next_id = np.where(found, tokenized.next_ids[safe], -1)

    # Rates: the top lift_positions examples, and the whole corpus through next-token counts.
    top = slice(0, lift_positions)
    in_t = (next_id[:, top, None] == promote_ids[:, None, :]).any(axis=2)
    with_next = next_id[:, top] >= 0
    hits = (in_t & with_next).sum(axis=1)
    counted = with_next.sum(axis=1)
    hit_rate = np.divide(hits, counted, out=np.full(d_mlp, np.nan), where=counted > 0)
    next_counts = tokenized.next_token_counts(d_vocab)
    total_with_next = int(next_counts.sum())
    base_rate = next_counts[promote_ids].sum(axis=1) / max(total_with_next, 1)
    lift = np.divide(hit_rate, base_rate, out=np.full(d_mlp, np.nan), where=base_rate > 0)

    activation = state_values[:, top].astype(np.float64)
    scale = scales[safe[:, top]]
    shown = found[:, top]
    per_example = np.where(shown, activation / np.where(shown, scale, 1.0), 0.0)
    direct_effect = effect_weights * per_example.sum(axis=1) / np.maximum(shown.sum(axis=1), 1)

    shown_index = safe[:, :examples, None] + np.arange(-CONTEXT_BEFORE, CONTEXT_AFTER + 1)
    inside = (shown_index >= 0) & (shown_index < tokenized.n_positions) & found[:, :examples, None]
    shown_index = np.clip(shown_index, 0, tokenized.n_positions - 1)
    inside &= tokenized.doc[shown_index] == tokenized.doc[safe[:, :examples, None]]
    context_ids = np.where(inside, tokenized.token_ids[shown_index], -1).astype(np.int32)
    return LayerActivations(
        layer=layer,
        n_positions=tokenized.n_positions,
        values=state_values.astype(np.float32),
        doc=np.where(found, tokenized.doc[safe], -1).astype(np.int32),
        position=np.where(found, tokenized.position[safe], -1).astype(np.int32),
        token_id=np.where(found, tokenized.token_ids[safe], -1).astype(np.int32),
        next_id=next_id.astype(np.int32),
        context_ids=context_ids,
        density=positive.astype(np.float64) / tokenized.n_positions,
        hit_rate=hit_rate,
        base_rate=base_rate,
        lift=lift,
        direct_effect=direct_effect,
        act_hist=act_hist.astype(np.int32),
        act_hist_top=int(act_hist_top),
        examples=examples,
        lift_positions=lift_positions,
    )
