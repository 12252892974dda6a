"""One layer's scan: every neuron's output direction against every vocabulary token.

The score block is formed a chunk of *tokens* at a time, ``W_U[:, chunk]^T @ W_out^T`` ([tokens,
neurons]), so memory stays bounded whatever the vocabulary and every row of a block holds one token
against the whole layer. Everything is read off each block in the same pass:

- per token: its best neurons by |score| (a top-N along the row) and the neuron whose direction
  meets it hardest per unit norm (coverage);
- per neuron: running candidates for the largest and most negative scores, kept with a threshold so
  that only the few entries that beat the current candidates are ever sorted; and the sums of
  centred powers for the variance, skew and kurtosis (the mean is exact: w . mean column).

Candidates are then rescored in float64 and re-ranked, so reported scores are float64 scores. In
float32 a rigorous bound on the fast pass's rounding error tells whether the candidates can have
missed a token; the rare rows where they might are recomputed fully in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.errors import ScanCancelled
from engine.results import LayerResult
from engine.scan.block_pass import COMPILED
from engine.scan.histogram_pass import HistogramAccumulator
from engine.scan.projection import ProjectedUnembed

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

CANDIDATE_MARGIN = (
    16  # extra candidates kept beyond k, so float32 rounding cannot push a true top-k token out
)
TOKEN_MARGIN = 8  # likewise for each token's best neurons, which are rescored when a token is queried
_FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
_VOCAB_CHUNK = 4096
_EXACT_BATCH = 64


def device_label(device: torch.device) -> str:
    """What computed a layer, the same whichever GPU of a machine it was: cpu, or cuda and its model."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def default_chunk_tokens(d_mlp: int, device: torch.device) -> int:
    """Tokens per block: the block buffers fit the budget.

    On CUDA the budget is half the free memory; on the CPU 48 MiB, which keeps the blocks near the
    caches and the peak memory small next to the weights.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # Three float32 buffers and the histogram's int64 keys: five float32-sized, one spare.
        return int(max(64, min(free // 2 // (d_mlp * 4 * 6), 1 << 16)))
    return int(max(64, min((48 << 20) // (d_mlp * 4 * 3), 1 << 16)))


def _sort_desc(
    values: torch.Tensor, ids: torch.Tensor, key: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by ``key`` descending, ties broken by ascending token id (deterministic)."""
    by_id = torch.argsort(ids, dim=1, stable=True)
    values, ids, key = values.gather(1, by_id), ids.gather(1, by_id), key.gather(1, by_id)
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    return values.gather(1, order), ids.gather(1, order)


def _rank_candidates(
    pos_ids: torch.Tensor, pos_exact: torch.Tensor, neg_ids: torch.Tensor, neg_exact: torch.Tensor, k: int
) -> dict[str, torch.Tensor]:
    """Exact promote, suppress and |score| top-k from float64-rescored candidates."""
    promote_dots, promote_ids = _sort_desc(pos_exact, pos_ids, pos_exact)
    suppress_dots, suppress_ids = _sort_desc(neg_exact, neg_ids, -neg_exact)
    # A token among both candidate sets (tiny vocabularies) must count once in the |score| ranking.
    duplicate = (neg_ids.unsqueeze(2) == pos_ids.unsqueeze(1)).any(dim=2)
    neg_abs = torch.where(duplicate, torch.full_like(neg_exact, -1.0), neg_exact.abs())
    all_ids = torch.cat([pos_ids, neg_ids], dim=1)
    all_exact = torch.cat([pos_exact, neg_exact], dim=1)
    top_dots, top_ids = _sort_desc(all_exact, all_ids, torch.cat([pos_exact.abs(), neg_abs], dim=1))
    return {
        "promote_ids": promote_ids[:, :k],
        "promote_dots": promote_dots[:, :k],
        "suppress_ids": suppress_ids[:, :k],
        "suppress_dots": suppress_dots[:, :k],
        "top_ids": top_ids[:, :k],
        "top_dots": top_dots[:, :k],
    }


def exact_score_rows(rows64: torch.Tensor, unembed: ProjectedUnembed) -> torch.Tensor:
    """Full float64 score rows [r, d_vocab] for a few neurons."""
    out = torch.empty((rows64.shape[0], unembed.d_vocab), dtype=torch.float64, device=rows64.device)
    for start in range(0, unembed.d_vocab, _VOCAB_CHUNK):
        ids = torch.arange(start, min(start + _VOCAB_CHUNK, unembed.d_vocab), device=rows64.device)
        out[:, start : start + len(ids)] = rows64 @ unembed.exact_columns(ids).T
    return out


def neuron_rows64(w_out: torch.Tensor, cosine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 neuron directions as projected (unit norm under --cosine) and their raw norms."""
    rows = w_out.double()
    norms = rows.norm(dim=1)
    if cosine:
        rows = rows / norms.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(1)
    return rows, norms


class _RunningExtremes:
    """Per neuron, the ``keep`` largest values seen so far (with their token ids).

    A block entry can only enter when it beats the neuron's current ``keep``-th value, so after the
    first block only a handful of entries per neuron are ever sorted.
    """

    def __init__(self, n_neurons: int, keep: int, device: torch.device):
        self.keep = keep
        self.values = torch.full((n_neurons, keep), -torch.inf, device=device)
        self.ids = torch.full((n_neurons, keep), -1, dtype=torch.long, device=device)
        self.filled = False
        # Entries that beat the threshold wait here and are merged in batches: a merge costs about
        # as much as the state it re-sorts, and the threshold only gets stricter with each merge.
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_count = 0

    @property
    def threshold(self) -> torch.Tensor:
        """Per neuron, what a new value must beat to enter."""
        return self.values[:, -1]

    def update(self, block: torch.Tensor, first_token: int, negated: bool = False) -> None:
        """Fold in ``block`` [tokens, neurons] whose row r is token ``first_token + r`` (its
        negation when ``negated``: the test is then turned around instead of negating the block)."""
        if not self.filled:
            width = min(self.keep, block.shape[0])
            values, rows = (-block if negated else block).topk(width, dim=0)  # [width, neurons]
            self._merge_dense(values.T, rows.T + first_token)
            self.filled = width == self.keep
            return
        beats = block < -self.threshold if negated else block > self.threshold
        rows, neurons = beats.nonzero(as_tuple=True)
        if rows.numel():
            values = block[rows, neurons]
            self._pending.append((neurons, -values if negated else values, rows + first_token))
            self._pending_count += rows.numel()
            if self._pending_count >= self.values.numel():
                self.flush()

    def flush(self) -> None:
        """Merge the waiting entries into the state."""
        if self._pending:
            neurons, values, ids = (torch.cat(parts) for parts in zip(*self._pending))
            self._pending, self._pending_count = [], 0
            self._merge_sparse(neurons, values, ids)

    def _merge_dense(self, values: torch.Tensor, ids: torch.Tensor) -> None:
        merged_values = torch.cat([self.values, values], dim=1)
        merged_ids = torch.cat([self.ids, ids], dim=1)
        self.values, position = merged_values.topk(self.keep, dim=1)
        self.ids = merged_ids.gather(1, position)

    def _merge_sparse(self, neurons: torch.Tensor, values: torch.Tensor, ids: torch.Tensor) -> None:
        n_neurons = self.values.shape[0]
        all_neurons = torch.cat(
            [torch.arange(n_neurons, device=neurons.device).repeat_interleave(self.keep), neurons]
        )
        all_values = torch.cat([self.values.flatten(), values])
        all_ids = torch.cat([self.ids.flatten(), ids])
        # Group by neuron, best first within a group, then keep each group's first ``keep``.
        order = torch.argsort(all_values, descending=True, stable=True)
        order = order[torch.argsort(all_neurons[order], stable=True)]
        counts = torch.bincount(all_neurons, minlength=n_neurons)
        group_start = torch.cumsum(counts, 0) - counts
        sorted_neurons = all_neurons[order]
        rank = torch.arange(order.numel(), device=order.device) - group_start[sorted_neurons]
        kept = rank < self.keep
        slot = (
            sorted_neurons[kept] * self.keep + rank[kept]
        )  # every slot is filled: each neuron brings its state
        values = torch.empty(n_neurons * self.keep, dtype=self.values.dtype, device=self.values.device)
        ids = torch.empty(n_neurons * self.keep, dtype=self.ids.dtype, device=self.ids.device)
        values[slot] = all_values[order][kept]
        ids[slot] = all_ids[order][kept]
        self.values, self.ids = values.view(n_neurons, self.keep), ids.view(n_neurons, self.keep)


_FIRST_BLOCK = 4096


def _blocks(d_vocab: int, chunk: int, keep: int) -> list[tuple[int, int]]:
    """Token ranges [start, stop) of the blocks. The first is at most _FIRST_BLOCK tokens (and at
    least ``keep``): its candidates are a dense top-k down each column, which on a GPU-sized block
    of 65,536 tokens costs more than the block's product; 4,096 tokens already give thresholds
    that let few entries of the later blocks through."""
    first = min(d_vocab, chunk, max(_FIRST_BLOCK, keep))
    return [(0, first)] + [(start, min(start + chunk, d_vocab)) for start in range(first, d_vocab, chunk)]


def scan_layer(
    layer: int,
    w_out: np.ndarray,
    unembed: ProjectedUnembed,
    top_k: int,
    token_top_n: int,
    chunk_tokens: int | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> LayerResult:
    """Scan one layer's W_out [d_mlp, d_model] against the projected unembedding.

    ``progress(done, total)`` counts vocabulary tokens; ``cancelled()`` is polled between blocks.
    """
    device, dtype = unembed.device, unembed.dtype
    d_mlp = w_out.shape[0]
    d_vocab = unembed.d_vocab
    cosine = unembed.projection.cosine
    w = torch.from_numpy(np.ascontiguousarray(w_out, dtype=np.float32)).to(device)
    rows64, norms = neuron_rows64(w, cosine)
    k = min(top_k, d_vocab)
    n_candidates = min(k + CANDIDATE_MARGIN, d_vocab)
    token_keep = min(token_top_n + TOKEN_MARGIN, d_mlp)
    chunk = chunk_tokens or default_chunk_tokens(d_mlp, device)

    # The fast operands: neurons as columns ([d_model, d_mlp]) and tokens as rows ([d_vocab, d_model]).
    neurons_fast = (rows64.to(dtype) if (cosine or dtype != torch.float32) else w).T.contiguous()
    tokens_fast = unembed.operand.T
    mean = rows64 @ unembed.column_mean  # exact mean score of each neuron over the vocabulary
    mean_fast = mean.float()
    inverse_norm = (torch.ones_like(norms) if cosine else 1.0 / norms.clamp_min(1e-30)).float()

    largest = _RunningExtremes(d_mlp, n_candidates, device)
    smallest = _RunningExtremes(d_mlp, n_candidates, device)  # of the negated scores
    token_ids = torch.empty((d_vocab, token_keep), dtype=torch.long, device=device)
    token_dots = torch.empty((d_vocab, token_keep), device=device)
    unit_best = torch.empty(d_vocab, device=device)
    unit_best_neuron = torch.empty(d_vocab, dtype=torch.long, device=device)
    sums = torch.zeros((3, d_mlp), dtype=torch.float64, device=device)  # sum of centred ^2, ^3, ^4
    block_buffer = torch.empty((chunk, d_mlp), device=device)
    fused = COMPILED.get((chunk, d_mlp), device)  # the compiled block pass, where it is used
    if fused is None:  # the eager pass's scratch
        work_buffer = torch.empty((chunk, d_mlp), device=device)
        power_buffer = torch.empty((chunk, d_mlp), device=device)
        key_buffer = torch.empty((chunk, d_mlp), dtype=torch.int64, device=device)
    # |score - mean| <= 2 |w| max|u| (Cauchy-Schwarz): the histogram window's upper end.
    row_scale = 1.0 if cosine else float(norms.max())
    histogram = HistogramAccumulator(d_mlp, 2 * row_scale * unembed.max_column_norm, device)

    for start, stop in _blocks(d_vocab, chunk, n_candidates):
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        size = stop - start
        block = block_buffer[:size]
        if dtype == torch.float32:
            torch.matmul(tokens_fast[start:stop], neurons_fast, out=block)
        else:
            block.copy_(tokens_fast[start:stop] @ neurons_fast)

        if fused is not None:  # one compiled pass (engine.scan.block_pass), then the top-k selections
            magnitude, best_unit, best_neuron, block_sums = fused(
                block, mean_fast, inverse_norm, histogram.window_low, histogram.bin_table()
            )
            _, best = magnitude.topk(token_keep, dim=1)
            token_ids[start:stop] = best
            token_dots[start:stop] = block.gather(1, best)
            unit_best[start:stop], unit_best_neuron[start:stop] = best_unit, best_neuron
            largest.update(block, start)
            smallest.update(block, start, negated=True)
            sums += torch.stack(block_sums)
            if progress is not None:
                progress(stop, d_vocab)
            continue

        # Per token: best neurons by |score|, and the best per unit norm (coverage).
        work, power = work_buffer[:size], power_buffer[:size]
        torch.abs(block, out=work)
        _, best = work.topk(token_keep, dim=1)
        token_ids[start:stop] = best
        token_dots[start:stop] = block.gather(1, best)
        work.mul_(inverse_norm)
        unit_best[start:stop], unit_best_neuron[start:stop] = work.max(dim=1)

        # Per neuron: candidates for the largest and the most negative scores.
        largest.update(block, start)
        smallest.update(block, start, negated=True)

        # Per neuron: centred power sums (float32 sums reduce pairwise: within 1e-6 of float64 here).
        torch.sub(block, mean_fast, out=work)
        histogram.update(work, key_buffer[:size])
        torch.mul(work, work, out=power)
        sums[0] += power.sum(0)
        sums[2] += torch.mul(power, power, out=block).sum(0)
        sums[1] += torch.mul(power, work, out=block).sum(0)
        if progress is not None:
            progress(stop, d_vocab)

    ranked = _finish_candidates(largest, smallest, rows64, norms, unembed, k, cosine, dtype == torch.float32)
    m2 = sums[0] / d_vocab
    safe_m2 = m2.clamp_min(torch.finfo(torch.float64).tiny)
    return LayerResult(
        layer=layer,
        top_ids=ranked["top_ids"].cpu().numpy().astype(np.int32),
        top_dots=ranked["top_dots"].cpu().numpy(),
        promote_ids=ranked["promote_ids"].cpu().numpy().astype(np.int32),
        promote_dots=ranked["promote_dots"].cpu().numpy(),
        suppress_ids=ranked["suppress_ids"].cpu().numpy().astype(np.int32),
        suppress_dots=ranked["suppress_dots"].cpu().numpy(),
        max_dot=ranked["top_dots"][:, 0].abs().cpu().numpy(),
        norm=norms.cpu().numpy(),
        mean=mean.cpu().numpy(),
        std=m2.sqrt().cpu().numpy(),
        skew=(sums[1] / d_vocab / safe_m2.pow(1.5)).cpu().numpy(),
        kurtosis=(sums[2] / d_vocab / safe_m2.pow(2)).cpu().numpy(),
        token_neurons=token_ids.cpu().numpy().astype(np.int32),
        token_dots=token_dots.cpu().numpy(),
        token_unit_best=unit_best.cpu().numpy(),
        token_unit_best_neuron=unit_best_neuron.cpu().numpy().astype(np.int32),
        score_hist=histogram.result(),
        score_hist_top=histogram.top,
        device=device_label(unembed.device),
    )


def _finish_candidates(
    largest: _RunningExtremes,
    smallest: _RunningExtremes,
    rows64: torch.Tensor,
    norms: torch.Tensor,
    unembed: ProjectedUnembed,
    k: int,
    cosine: bool,
    check_bounds: bool,
) -> dict[str, torch.Tensor]:
    """Rescore the candidates in float64, rank them, and recompute rows the bound cannot clear."""
    largest.flush()
    smallest.flush()
    pos_ids, neg_ids = largest.ids, smallest.ids
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, rows64.shape[0], 128):  # float64 gathers small enough to stay in cache
        rows = slice(start, start + 128)
        pos_exact = torch.einsum("cd,ckd->ck", rows64[rows], unembed.exact_columns(pos_ids[rows]))
        neg_exact = torch.einsum("cd,ckd->ck", rows64[rows], unembed.exact_columns(neg_ids[rows]))
        for name, value in _rank_candidates(pos_ids[rows], pos_exact, neg_ids[rows], neg_exact, k).items():
            parts.setdefault(name, []).append(value)
    ranked = {name: torch.cat(chunks) for name, chunks in parts.items()}
    if check_bounds and pos_ids.shape[1] < unembed.d_vocab:
        # Any token outside the candidates scores at most largest's last value + err (at least
        # -(smallest's last value) - err); the exact k-th values must clear that for the ranking to be exact.
        gamma = (unembed.d_model + 4) * _FLOAT32_EPS * 1.01
        row_scale = torch.ones_like(norms) if cosine else norms
        err = gamma * row_scale * unembed.max_column_norm
        pos_last = largest.values[:, -1].double()
        neg_last = -smallest.values[:, -1].double()
        outside = torch.maximum(pos_last, -neg_last) + err
        unsafe = (
            (ranked["promote_dots"][:, -1] <= pos_last + err)
            | (ranked["suppress_dots"][:, -1] >= neg_last - err)
            | (ranked["top_dots"][:, -1].abs() <= outside)
        )
        if bool(unsafe.any()):
            _rescore_rows_fully(ranked, rows64, unsafe, unembed, k)
    return ranked


def _rescore_rows_fully(
    ranked: dict[str, torch.Tensor],
    rows64: torch.Tensor,
    unsafe: torch.Tensor,
    unembed: ProjectedUnembed,
    k: int,
) -> None:
    """Replace the rankings of ``unsafe`` rows with ones from full float64 score rows."""
    indices = unsafe.nonzero().flatten()
    for batch in indices.split(_EXACT_BATCH):
        full = exact_score_rows(rows64[batch], unembed)
        all_ids = torch.arange(unembed.d_vocab, device=full.device).expand_as(full)
        width = min(2 * k, unembed.d_vocab)
        pos_exact, pos_ids = _sort_desc(full, all_ids, full)
        neg_exact, neg_ids = _sort_desc(full, all_ids, -full)
        exact = _rank_candidates(
            pos_ids[:, :width], pos_exact[:, :width], neg_ids[:, :width], neg_exact[:, :width], k
        )
        for name, value in exact.items():
            ranked[name][batch] = value


def scan_shrinking_on_oom(
    layer: int,
    w_out: np.ndarray,
    unembed: ProjectedUnembed,
    settings,
    chunk_tokens: int | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    on_shrink: Callable[[int], None] | None = None,
) -> LayerResult:
    """Scan a layer; when the device runs out of memory, halve the block and try again
    (``on_shrink(new_size)`` hears of each halving)."""
    from engine.errors import UserError
    from engine.resources import free_device_memory, is_out_of_memory

    chunk = chunk_tokens or default_chunk_tokens(w_out.shape[0], unembed.device)
    while True:
        try:
            return scan_layer(
                layer,
                w_out,
                unembed,
                settings.top_k,
                settings.token_top_n,
                chunk_tokens=chunk,
                progress=progress,
                cancelled=cancelled,
            )
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            free_device_memory(unembed.device)
            if chunk <= 16:
                raise UserError(
                    f"out of memory on {unembed.device} even with {chunk}-token blocks; "
                    "use --device cpu, --dtype bfloat16 or a machine with more memory"
                ) from error
            chunk //= 2
            if on_shrink is not None:
                on_shrink(chunk)
