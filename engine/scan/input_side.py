"""A layer's input side (engine.data.inputs): each input row against every embedding row, by cosine.

The product runs in float32 a chunk of tokens at a time, keeping each row's best and worst
candidates; the candidates are then rescored in float64 and ranked (ties by lower token id). A
rigorous bound on the float32 error tells whether a token outside the candidates could have beaten
the k-th: such rows (rare) are recomputed in full in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.data.inputs import LayerInputs, io_classes
from engine.data.model import FinalNorm, MlpInputs
from engine.scan import fused_block
from engine.scan.candidate_scores import row_dots

_CHUNK = 4096
_MARGIN = 16  # candidates kept beyond k
_EPS32 = 2.0**-24


def effective_rows(rows: np.ndarray, norm: FinalNorm | None) -> np.ndarray:
    """Input rows as the residual stream sees them: γ ⊙ w, centred over d_model for a LayerNorm."""
    out = rows.astype(np.float64)
    if norm is not None:
        out = out * norm.scale.astype(np.float64)
        if norm.centres:
            out = out - out.mean(axis=1, keepdims=True)
    return out


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, np.finfo(np.float64).tiny)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosines of two [n, d] float64 arrays (0 for a zero row)."""
    return np.einsum("nd,nd->n", _unit(a), _unit(b))


def _ranked(ids: torch.Tensor, values: torch.Tensor, k: int, descending: bool):
    by_id = torch.argsort(ids, dim=1, stable=True)
    ids, values = ids.gather(1, by_id), values.gather(1, by_id)
    order = torch.argsort(values, dim=1, descending=descending, stable=True)[:, :k]
    return ids.gather(1, order), values.gather(1, order)


Candidates = tuple[torch.Tensor, torch.Tensor]  # (fast scores, token ids) [rows, keep]


def _candidates_swept(unit32, table32, inverse32, keep: int) -> tuple[Candidates, Candidates]:
    """The largest (descending) and most negative (ascending) fast cosines of each row, by the numba
    heaps of ``engine.scan.fused_block``: one product per chunk and one sweep, no merge."""
    n, vocab = unit32.shape[0], table32.shape[0]
    running = fused_block.RowCandidates(n, keep)
    product = torch.empty((n, min(_CHUNK, vocab)))
    inverse = inverse32.numpy()
    for start in range(0, vocab, _CHUNK):
        stop = min(start + _CHUNK, vocab)
        block = product if stop - start == product.shape[1] else torch.empty((n, stop - start))
        torch.matmul(unit32, table32[start:stop].T, out=block)
        running.update(block.numpy(), start, inverse)
    (pos_values, pos_ids), (neg_values, neg_ids) = running.extremes()
    best = torch.from_numpy(pos_values), torch.from_numpy(pos_ids)
    return best, (torch.from_numpy(-neg_values), torch.from_numpy(neg_ids))


def _candidates_merged(unit32, table32, inverse32, keep: int) -> tuple[Candidates, Candidates]:
    """The same candidates by merging each chunk's scores with torch's top-k (any device)."""
    n, vocab, device = unit32.shape[0], table32.shape[0], unit32.device
    best = (
        torch.full((n, 0), -torch.inf, device=device),
        torch.zeros((n, 0), dtype=torch.long, device=device),
    )
    worst = (
        torch.full((n, 0), torch.inf, device=device),
        torch.zeros((n, 0), dtype=torch.long, device=device),
    )
    for start in range(0, vocab, _CHUNK):
        stop = min(start + _CHUNK, vocab)
        scores = (unit32 @ table32[start:stop].T) * inverse32[start:stop]
        ids = torch.arange(start, stop, device=device).expand(n, -1)
        merged = torch.cat([best[0], scores], 1), torch.cat([best[1], ids], 1)
        top = merged[0].topk(min(keep, merged[0].shape[1]), dim=1)
        best = top.values, merged[1].gather(1, top.indices)
        merged = torch.cat([worst[0], scores], 1), torch.cat([worst[1], ids], 1)
        low = merged[0].topk(min(keep, merged[0].shape[1]), dim=1, largest=False)
        worst = low.values, merged[1].gather(1, low.indices)
    return best, worst


def signed_top_cosines(
    rows: np.ndarray, table: np.ndarray, k: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``rows`` [n, d] (float64), the k rows v of ``table`` [V, d] with the largest and
    the k with the most negative cos(table[v], row): (plus_ids, plus_cos, minus_ids, minus_cos)."""
    vocab, d_model = table.shape
    k = min(k, vocab)
    keep = min(k + _MARGIN, vocab)
    unit64 = torch.from_numpy(_unit(rows)).to(device)
    table32 = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32)).to(device)
    table_norm = torch.linalg.vector_norm(table32, dim=1, dtype=torch.float64)
    table_norm = table_norm.clamp_min(np.finfo(np.float64).tiny)
    inverse32 = (1.0 / table_norm).float()
    unit32 = unit64.float()
    n = unit64.shape[0]
    if device.type == "cpu" and fused_block.AVAILABLE:
        best, worst = _candidates_swept(unit32, table32, inverse32, keep)
    else:
        best, worst = _candidates_merged(unit32, table32, inverse32, keep)

    def exact(ids: torch.Tensor) -> torch.Tensor:
        out = torch.empty(ids.shape, dtype=torch.float64, device=device)
        for start in range(0, n, 256):  # bounded memory: 256 rows' candidates at a time
            part = ids[start : start + 256]
            out[start : start + 256] = row_dots(unit64[start : start + 256], table32, part) / table_norm[part]
        return out

    plus_ids, plus_cos = _ranked(best[1], exact(best[1]), k, descending=True)
    minus_ids, minus_cos = _ranked(worst[1], exact(worst[1]), k, descending=False)
    # |fast - exact| <= (d + 4) u for unit vectors (accumulation, the rounded unit row and the
    # rounded inverse norm), doubled for safety. A token outside the candidates scored at most the
    # last candidate's fast score, so its exact cosine is at most that + bound.
    bound = 2.0 * (d_model + 4) * _EPS32
    if keep < vocab:
        unsure = (plus_cos[:, -1] <= best[0][:, -1].double() + bound) | (
            minus_cos[:, -1] >= worst[0][:, -1].double() - bound
        )
        for row in unsure.nonzero().flatten().tolist():
            full = torch.cat(
                [
                    (unit64[row] @ table32[s : s + _CHUNK].double().T) / table_norm[s : s + _CHUNK]
                    for s in range(0, vocab, _CHUNK)
                ]
            )
            ids = torch.arange(vocab, device=device).unsqueeze(0)
            p_ids, p_cos = _ranked(ids, full.unsqueeze(0), k, descending=True)
            m_ids, m_cos = _ranked(ids, full.unsqueeze(0), k, descending=False)
            plus_ids[row], plus_cos[row], minus_ids[row], minus_cos[row] = (
                p_ids[0],
                p_cos[0],
                m_ids[0],
                m_cos[0],
            )
    return (
        plus_ids.cpu().numpy().astype(np.int32),
        plus_cos.cpu().numpy(),
        minus_ids.cpu().numpy().astype(np.int32),
        minus_cos.cpu().numpy(),
    )


def layer_inputs(
    layer: int,
    inputs: MlpInputs,
    norm: FinalNorm | None,
    w_out: np.ndarray,
    embedding: np.ndarray,
    k: int,
    device: torch.device,
) -> LayerInputs:
    """Everything engine.inputs defines, for one layer."""
    rows = [inputs.gate, inputs.up] if inputs.gate is not None else [inputs.up]
    effective = [effective_rows(row, norm) for row in rows]
    out = w_out.astype(np.float64)
    if norm is not None and norm.centres:
        out = out - out.mean(axis=1, keepdims=True)
    found = [signed_top_cosines(row, embedding, k, device) for row in effective]
    cos_out = np.stack([cosine_rows(row, out) for row in effective])
    gated = inputs.gate is not None
    cos_gate_up = cosine_rows(effective[0], effective[1]) if gated else np.full(out.shape[0], np.nan)
    return LayerInputs(
        layer=layer,
        gated=gated,
        plus_ids=np.stack([f[0] for f in found]),
        plus_cos=np.stack([f[1] for f in found]),
        minus_ids=np.stack([f[2] for f in found]),
        minus_cos=np.stack([f[3] for f in found]),
        cos_out=cos_out,
        cos_gate_up=cos_gate_up,
        io_class=io_classes(cos_out[-1], cos_out[0] if gated else None, cos_gate_up if gated else None),
    )
