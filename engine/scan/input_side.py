"""A layer's input side (engine.data.inputs): each input row against every embedding row, by cosine.

The product runs in float32 a block of embedding rows at a time, keeping each row's best and worst
candidates; the candidates are then rescored in float64 and ranked (ties by lower token id). A
rigorous bound on the float32 error tells whether a token outside the candidates could have beaten
the k-th: such rows (rare) are recomputed in full in float64.

Memory: the embedding stays as its file stores it and is widened to float32 one block at a time
(``EmbeddingRows``); the input rows are widened to float64 a batch of rows at a time. Every value
is computed row by row, so the batches change no result.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.data.inputs import LayerInputs, io_classes
from engine.data.model import EmbeddingRows, FinalNorm, MlpInputs
from engine.scan import fused_block
from engine.scan.candidate_scores import row_dots

_CHUNK = 4096  # embedding rows per block, fewer when there are many input rows
_BLOCK_BYTES = 64 << 20  # the [input rows, block] float32 product
_MARGIN = 16  # candidates kept beyond k
_ROW_BATCH = 1024  # input rows widened to float64 at a time
_NORM_ROWS = 512  # embedding rows widened to float64 at a time for their norms
_EXACT_ROWS = 64  # input rows whose candidates are gathered and rescored at a time
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


class InputRows:
    """One input matrix [n, d_model] (float32, as read) seen through the norm before the MLP:
    effective and unit rows in float64 for a batch of rows at a time, never for all of them."""

    def __init__(self, rows: np.ndarray, norm: FinalNorm | None) -> None:
        self.rows, self.norm = rows, norm
        self.count = int(rows.shape[0])

    def effective(self, start: int, stop: int) -> np.ndarray:
        return effective_rows(self.rows[start:stop], self.norm)

    def unit64(self, start: int, stop: int) -> np.ndarray:
        return _unit(self.effective(start, stop))

    def unit32(self) -> torch.Tensor:
        """Every unit row rounded to float32: the fast product's operand."""
        out = torch.empty((self.count, self.rows.shape[1]), dtype=torch.float32)
        for start in range(0, self.count, _ROW_BATCH):
            stop = min(start + _ROW_BATCH, self.count)
            out[start:stop] = torch.from_numpy(self.unit64(start, stop))
        return out


def _ranked(ids: torch.Tensor, values: torch.Tensor, k: int, descending: bool):
    by_id = torch.argsort(ids, dim=1, stable=True)
    ids, values = ids.gather(1, by_id), values.gather(1, by_id)
    order = torch.argsort(values, dim=1, descending=descending, stable=True)[:, :k]
    return ids.gather(1, order), values.gather(1, order)


Candidates = tuple[torch.Tensor, torch.Tensor]  # (fast scores, token ids) [rows, keep]


class _Table:
    """The embedding as the product reads it: float32 blocks on the device, and every row's float64
    norm, filled in as the blocks go by (the first pass over the table computes them)."""

    def __init__(self, embedding: EmbeddingRows, device: torch.device, chunk: int) -> None:
        self.embedding, self.device, self.chunk = embedding, device, chunk
        self.vocab, self.d_model = embedding.shape
        self.norm = torch.empty(self.vocab, dtype=torch.float64, device=device)
        self.inverse32 = torch.empty(self.vocab, dtype=torch.float32, device=device)

    def blocks(self, measure: bool = False):
        """(start, stop, float32 rows [stop - start, d_model]) over the whole table; ``measure``
        fills the norms of each block before it is handed out."""
        for start in range(0, self.vocab, self.chunk):
            stop = min(start + self.chunk, self.vocab)
            block = torch.from_numpy(self.embedding.rows(start, stop)).to(self.device)
            if measure:
                self._measure(start, block)
            yield start, stop, block

    def _measure(self, start: int, block: torch.Tensor) -> None:
        for first in range(0, block.shape[0], _NORM_ROWS):  # float64 copies of a few rows at a time
            norm = torch.linalg.vector_norm(block[first : first + _NORM_ROWS], dim=1, dtype=torch.float64)
            at = slice(start + first, start + first + norm.shape[0])
            self.norm[at] = norm.clamp_min(np.finfo(np.float64).tiny)
            self.inverse32[at] = (1.0 / self.norm[at]).float()


def _candidates_swept(unit32: torch.Tensor, table: _Table, keep: int) -> tuple[Candidates, Candidates]:
    """The largest (descending) and most negative (ascending) fast cosines of each row, by the numba
    heaps of ``engine.scan.fused_block``: one product per block and one sweep, no merge."""
    n = unit32.shape[0]
    running = fused_block.RowCandidates(n, keep)
    product = torch.empty((n, min(table.chunk, table.vocab)))
    inverse = table.inverse32.numpy()
    for start, stop, rows in table.blocks(measure=True):
        block = product if stop - start == product.shape[1] else torch.empty((n, stop - start))
        torch.matmul(unit32, rows.T, out=block)
        running.update(block.numpy(), start, inverse)
    (pos_values, pos_ids), (neg_values, neg_ids) = running.extremes()
    best = torch.from_numpy(pos_values), torch.from_numpy(pos_ids)
    return best, (torch.from_numpy(-neg_values), torch.from_numpy(neg_ids))


def _candidates_merged(unit32: torch.Tensor, table: _Table, keep: int) -> tuple[Candidates, Candidates]:
    """The same candidates by merging each block's scores with torch's top-k (any device)."""
    n, device = unit32.shape[0], unit32.device
    best = (
        torch.full((n, 0), -torch.inf, device=device),
        torch.zeros((n, 0), dtype=torch.long, device=device),
    )
    worst = (
        torch.full((n, 0), torch.inf, device=device),
        torch.zeros((n, 0), dtype=torch.long, device=device),
    )
    for start, stop, rows in table.blocks(measure=True):
        scores = (unit32 @ rows.T) * table.inverse32[start:stop]
        ids = torch.arange(start, stop, device=device).expand(n, -1)
        merged = torch.cat([best[0], scores], 1), torch.cat([best[1], ids], 1)
        top = merged[0].topk(min(keep, merged[0].shape[1]), dim=1)
        best = top.values, merged[1].gather(1, top.indices)
        merged = torch.cat([worst[0], scores], 1), torch.cat([worst[1], ids], 1)
        low = merged[0].topk(min(keep, merged[0].shape[1]), dim=1, largest=False)
        worst = low.values, merged[1].gather(1, low.indices)
    return best, worst


def _exact_cosines(rows: InputRows, table: _Table, ids: torch.Tensor) -> torch.Tensor:
    """Float64 cosines [n, c] of each row with its candidate tokens ``ids`` [n, c]: the candidates'
    embedding rows are gathered a few input rows at a time, as stored, and widened one by one."""
    out = torch.empty(ids.shape, dtype=torch.float64, device=table.device)
    for start in range(0, rows.count, _EXACT_ROWS):
        stop = min(start + _EXACT_ROWS, rows.count)
        part = ids[start:stop].cpu().numpy()
        wanted, local = np.unique(part, return_inverse=True)
        gathered = torch.from_numpy(table.embedding.take(wanted)).to(table.device)
        unit64 = torch.from_numpy(rows.unit64(start, stop)).to(table.device)
        local_ids = torch.from_numpy(local.reshape(part.shape)).to(table.device)
        out[start:stop] = row_dots(unit64, gathered, local_ids) / table.norm[ids[start:stop]]
    return out


def _full_rows(rows: InputRows, table: _Table, which: list[int]) -> torch.Tensor:
    """Float64 cosines [len(which), d_vocab] of rows ``which`` with every token (the rows the bound
    cannot clear: rare), one pass over the table for all of them."""
    unit64 = torch.from_numpy(np.concatenate([rows.unit64(row, row + 1) for row in which])).to(table.device)
    full = torch.empty((len(which), table.vocab), dtype=torch.float64, device=table.device)
    for start, stop, block in table.blocks():
        wide = block.double().T
        for index in range(len(which)):
            full[index, start:stop] = (unit64[index] @ wide) / table.norm[start:stop]
    return full


def _recheck(rows: InputRows, table: _Table, unsure: list[int], k: int, ranked: list[torch.Tensor]) -> None:
    """Replace the rankings of rows ``unsure`` by ones from their full float64 rows."""
    plus_ids, plus_cos, minus_ids, minus_cos = ranked
    ids = torch.arange(table.vocab, device=table.device).unsqueeze(0)
    for start in range(0, len(unsure), _EXACT_ROWS):
        which = unsure[start : start + _EXACT_ROWS]
        full = _full_rows(rows, table, which)
        for index, row in enumerate(which):
            p_ids, p_cos = _ranked(ids, full[index].unsqueeze(0), k, descending=True)
            m_ids, m_cos = _ranked(ids, full[index].unsqueeze(0), k, descending=False)
            plus_ids[row], plus_cos[row], minus_ids[row], minus_cos[row] = (
                p_ids[0],
                p_cos[0],
                m_ids[0],
                m_cos[0],
            )


def signed_top_cosines(
    rows: InputRows, embedding: EmbeddingRows, k: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per input row, the k embedding rows v with the largest and the k with the most negative
    cos(W_E[v], row): (plus_ids, plus_cos, minus_ids, minus_cos)."""
    vocab, d_model = embedding.shape
    k = min(k, vocab)
    keep = min(k + _MARGIN, vocab)
    chunk = int(min(_CHUNK, max(256, _BLOCK_BYTES // (4 * rows.count) // 256 * 256)))
    table = _Table(embedding, device, chunk)
    unit32 = rows.unit32().to(device)
    if device.type == "cpu" and fused_block.AVAILABLE:
        best, worst = _candidates_swept(unit32, table, keep)
    else:
        best, worst = _candidates_merged(unit32, table, keep)
    del unit32
    plus_ids, plus_cos = _ranked(best[1], _exact_cosines(rows, table, best[1]), k, descending=True)
    minus_ids, minus_cos = _ranked(worst[1], _exact_cosines(rows, table, worst[1]), k, descending=False)
    # |fast - exact| <= (d + 4) u for unit vectors (accumulation, the rounded unit row and the
    # rounded inverse norm), doubled for safety. A token outside the candidates scored at most the
    # last candidate's fast score, so its exact cosine is at most that + bound.
    bound = 2.0 * (d_model + 4) * _EPS32
    if keep < vocab:
        unsure = (plus_cos[:, -1] <= best[0][:, -1].double() + bound) | (
            minus_cos[:, -1] >= worst[0][:, -1].double() - bound
        )
        which = unsure.nonzero().flatten().tolist()
        if which:
            _recheck(rows, table, which, k, [plus_ids, plus_cos, minus_ids, minus_cos])
    return (
        plus_ids.cpu().numpy().astype(np.int32),
        plus_cos.cpu().numpy(),
        minus_ids.cpu().numpy().astype(np.int32),
        minus_cos.cpu().numpy(),
    )


def _row_cosines(
    matrices: list[InputRows], w_out: np.ndarray, norm: FinalNorm | None
) -> tuple[np.ndarray, np.ndarray]:
    """(cos(w_eff, w_out) per input matrix [m, d_mlp], cos(gate_eff, up_eff) [d_mlp] or NaN for a
    plain MLP), a batch of rows at a time."""
    d_mlp = w_out.shape[0]
    cos_out = np.empty((len(matrices), d_mlp))
    cos_gate_up = np.full(d_mlp, np.nan)
    for start in range(0, d_mlp, _ROW_BATCH):
        stop = min(start + _ROW_BATCH, d_mlp)
        out = w_out[start:stop].astype(np.float64)
        if norm is not None and norm.centres:
            out = out - out.mean(axis=1, keepdims=True)
        effective = [matrix.effective(start, stop) for matrix in matrices]
        for index, rows in enumerate(effective):
            cos_out[index, start:stop] = cosine_rows(rows, out)
        if len(effective) == 2:
            cos_gate_up[start:stop] = cosine_rows(effective[0], effective[1])
    return cos_out, cos_gate_up


def layer_inputs(
    layer: int,
    inputs: MlpInputs,
    norm: FinalNorm | None,
    w_out: np.ndarray,
    embedding: EmbeddingRows,
    k: int,
    device: torch.device,
) -> LayerInputs:
    """Everything engine.inputs defines, for one layer."""
    gated = inputs.gate is not None
    rows = [inputs.gate, inputs.up] if inputs.gate is not None else [inputs.up]
    matrices = [InputRows(matrix, norm) for matrix in rows]
    found = [signed_top_cosines(matrix, embedding, k, device) for matrix in matrices]
    cos_out, cos_gate_up = _row_cosines(matrices, w_out, norm)
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
