"""One layer's scan: every neuron's output direction against every vocabulary token.

The score block ``W_out[chunk] @ W_U`` is formed a chunk of neurons at a time (memory stays bounded
whatever the vocabulary), and everything is read off it in the same pass: per neuron the candidate
top/promote/suppress tokens and the moments of its scores, per token its candidate best neurons.
Candidates are then rescored in float64 and re-ranked, so reported scores are float64 scores. In
float32 a rigorous bound on the fast pass's rounding error tells whether the candidates can have
missed a token; the rare rows or columns where they might are recomputed fully in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.errors import ScanCancelled
from engine.projection import ProjectedUnembed
from engine.results import LayerResult

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

CANDIDATE_MARGIN = 16  # extra candidates kept beyond k, so float32 rounding cannot push a true top-k token out
HIST_BINS = 48  # bins of each neuron's score histogram over the vocabulary (the detail view draws it)
TOKEN_MARGIN = 8  # likewise for each token's best neurons, which are rescored when a token is queried
_FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
_VOCAB_CHUNK = 4096
_EXACT_BATCH = 64


def default_chunk_rows(d_vocab: int, device: torch.device, dtype: torch.dtype) -> int:
    """Neurons per chunk: the score block and its temporaries (about six float32 copies) fit the budget.

    On CUDA the budget is half the free memory; on the CPU 256 MiB, which keeps blocks cache-friendly
    and the peak memory small next to the weights.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = free // 2
    else:
        budget = 256 << 20
    per_row = d_vocab * 4 * 6
    return int(max(8, min(budget // per_row, 4096)))


def _sort_desc(values: torch.Tensor, ids: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def _exact_rows(rows64: torch.Tensor, unembed: ProjectedUnembed) -> torch.Tensor:
    """Full float64 score rows [r, d_vocab] for a few neurons."""
    out = torch.empty((rows64.shape[0], unembed.d_vocab), dtype=torch.float64, device=rows64.device)
    for start in range(0, unembed.d_vocab, _VOCAB_CHUNK):
        ids = torch.arange(start, min(start + _VOCAB_CHUNK, unembed.d_vocab), device=rows64.device)
        out[:, start : start + len(ids)] = rows64 @ unembed.exact_columns(ids).T
    return out


def _neuron_rows64(w_out: torch.Tensor, start: int, stop: int, cosine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 neuron directions as projected (unit norm under --cosine) and their raw norms."""
    rows = w_out[start:stop].double()
    norms = rows.norm(dim=1)
    if cosine:
        rows = rows / norms.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(1)
    return rows, norms


def scan_layer(
    layer: int,
    w_out: np.ndarray,
    unembed: ProjectedUnembed,
    top_k: int,
    token_top_n: int,
    chunk_rows: int | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> LayerResult:
    """Scan one layer's W_out [d_mlp, d_model] against the projected unembedding."""
    device, dtype = unembed.device, unembed.dtype
    d_mlp = w_out.shape[0]
    d_vocab = unembed.d_vocab
    cosine = unembed.projection.cosine
    w = torch.from_numpy(np.ascontiguousarray(w_out, dtype=np.float32)).to(device)
    k = min(top_k, d_vocab)
    n_candidates = min(k + CANDIDATE_MARGIN, d_vocab)
    token_candidates = min(token_top_n + TOKEN_MARGIN, d_mlp)
    check_bounds = dtype == torch.float32
    gamma = (unembed.d_model + 4) * _FLOAT32_EPS * 1.01
    chunk = chunk_rows or default_chunk_rows(d_vocab, device, dtype)

    parts: dict[str, list[torch.Tensor]] = {}
    token_abs = torch.full((d_vocab, 0), -1.0, device=device)
    token_ids = torch.zeros((d_vocab, 0), dtype=torch.long, device=device)
    token_signed = torch.zeros((d_vocab, 0), device=device)
    unit_best = torch.full((d_vocab,), -1.0, device=device)
    unit_best_neuron = torch.zeros(d_vocab, dtype=torch.long, device=device)
    for start in range(0, d_mlp, chunk):
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        stop = min(start + chunk, d_mlp)
        rows64, norms = _neuron_rows64(w, start, stop, cosine)
        fast_rows = rows64.to(dtype) if (cosine or dtype != torch.float32) else w[start:stop]
        scores = fast_rows @ unembed.operand
        if scores.dtype != torch.float32:
            scores = scores.float()

        pos_fast, pos_ids = scores.topk(n_candidates, dim=1)
        neg_fast, neg_ids = scores.topk(n_candidates, dim=1, largest=False)
        pos_exact = torch.einsum("cd,ckd->ck", rows64, unembed.exact_columns(pos_ids))
        neg_exact = torch.einsum("cd,ckd->ck", rows64, unembed.exact_columns(neg_ids))
        ranked = _rank_candidates(pos_ids, pos_exact, neg_ids, neg_exact, k)

        if check_bounds:
            # Any token outside the candidates scores at most pos_fast[:, -1] + err (at least
            # neg_fast[:, -1] - err); the exact k-th values must clear that for the ranking to be exact.
            row_scale = torch.ones_like(norms) if cosine else norms
            err = gamma * row_scale * unembed.max_column_norm
            outside = torch.maximum(pos_fast[:, -1].double(), -neg_fast[:, -1].double()) + err
            unsafe = (ranked["promote_dots"][:, -1] <= pos_fast[:, -1].double() + err) | (
                ranked["suppress_dots"][:, -1] >= neg_fast[:, -1].double() - err
            ) | (ranked["top_dots"][:, -1].abs() <= outside)
            if n_candidates < d_vocab and bool(unsafe.any()):
                _rescore_rows_fully(ranked, rows64, unsafe, unembed, k)

        # Moments of each neuron's scores over the vocabulary; the mean is exact (w . mean column).
        mean = rows64 @ unembed.column_mean
        hist_counts, hist_range = _score_histogram(scores, neg_fast[:, 0], pos_fast[:, 0])
        token_abs, token_ids, token_signed = _merge_token_candidates(
            token_abs, token_ids, token_signed, scores, start, token_candidates
        )
        # Per token, the neuron whose *direction* meets it hardest (|dot| per unit norm): coverage.
        unit = scores.abs() if cosine else scores.abs().div_(norms.float().clamp_min(1e-30).unsqueeze(1))
        chunk_best, chunk_best_row = unit.max(dim=0)
        del unit
        better = chunk_best > unit_best
        unit_best = torch.where(better, chunk_best, unit_best)
        unit_best_neuron = torch.where(better, chunk_best_row + start, unit_best_neuron)

        centred = scores.sub_(mean.float().unsqueeze(1))
        squared = centred * centred
        # float32 sums: torch reduces them pairwise, within 1e-6 of float64 here and 3x faster.
        m2 = squared.sum(1).double() / d_vocab
        m3 = (squared * centred).sum(1).double() / d_vocab
        m4 = squared.pow_(2).sum(1).double() / d_vocab
        del centred, squared, scores
        safe_m2 = m2.clamp_min(torch.finfo(torch.float64).tiny)
        stats = {
            "norm": norms,
            "mean": mean,
            "std": m2.sqrt(),
            "skew": m3 / safe_m2.pow(1.5),
            "kurtosis": m4 / safe_m2.pow(2),
            "score_hist": hist_counts,
            "score_hist_range": hist_range,
        }
        for name, value in {**ranked, **stats}.items():
            parts.setdefault(name, []).append(value.cpu())
        if progress is not None:
            progress(stop, d_mlp)

    merged = {name: torch.cat(values).numpy() for name, values in parts.items()}
    return LayerResult(
        layer=layer,
        top_ids=merged["top_ids"].astype(np.int32),
        top_dots=merged["top_dots"],
        promote_ids=merged["promote_ids"].astype(np.int32),
        promote_dots=merged["promote_dots"],
        suppress_ids=merged["suppress_ids"].astype(np.int32),
        suppress_dots=merged["suppress_dots"],
        max_dot=np.abs(merged["top_dots"][:, 0]),
        norm=merged["norm"],
        mean=merged["mean"],
        std=merged["std"],
        skew=merged["skew"],
        kurtosis=merged["kurtosis"],
        score_hist=merged["score_hist"].astype(np.int32),
        score_hist_range=merged["score_hist_range"].astype(np.float32),
        token_neurons=token_ids.cpu().numpy().astype(np.int32),
        token_dots=token_signed.cpu().numpy(),
        token_unit_best=unit_best.cpu().numpy(),
        token_unit_best_neuron=unit_best_neuron.cpu().numpy().astype(np.int32),
    )


def _rescore_rows_fully(
    ranked: dict[str, torch.Tensor], rows64: torch.Tensor, unsafe: torch.Tensor, unembed: ProjectedUnembed, k: int
) -> None:
    """Replace the rankings of ``unsafe`` rows with ones from full float64 score rows."""
    indices = unsafe.nonzero().flatten()
    for batch in indices.split(_EXACT_BATCH):
        full = _exact_rows(rows64[batch], unembed)
        all_ids = torch.arange(unembed.d_vocab, device=full.device).expand_as(full)
        width = min(2 * k, unembed.d_vocab)
        pos_exact, pos_ids = _sort_desc(full, all_ids, full)
        neg_exact, neg_ids = _sort_desc(full, all_ids, -full)
        exact = _rank_candidates(pos_ids[:, :width], pos_exact[:, :width], neg_ids[:, :width], neg_exact[:, :width], k)
        for name, value in exact.items():
            ranked[name][batch] = value


def _merge_token_candidates(
    best_abs: torch.Tensor, best_ids: torch.Tensor, best_signed: torch.Tensor, scores: torch.Tensor, start: int, keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold a chunk's scores into each token's running best neurons (by |score|, fast precision)."""
    chunk_keep = min(keep, scores.shape[0])
    chunk_abs, chunk_rows = scores.abs().topk(chunk_keep, dim=0)  # [chunk_keep, d_vocab]
    chunk_signed = scores.gather(0, chunk_rows)
    merged_abs = torch.cat([best_abs, chunk_abs.T], dim=1)
    merged_ids = torch.cat([best_ids, chunk_rows.T + start], dim=1)
    merged_signed = torch.cat([best_signed, chunk_signed.T], dim=1)
    width = min(keep, merged_abs.shape[1])
    best_abs, position = merged_abs.topk(width, dim=1)
    return best_abs, merged_ids.gather(1, position), merged_signed.gather(1, position)


def _score_histogram(scores: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row counts of scores in HIST_BINS equal bins spanning [low, high] of that row."""
    rows = scores.shape[0]
    width = ((high - low) / HIST_BINS).clamp_min(torch.finfo(torch.float32).tiny)
    bins = ((scores - low.unsqueeze(1)) / width.unsqueeze(1)).to(torch.int32).clamp_(0, HIST_BINS - 1)
    bins += (torch.arange(rows, device=scores.device, dtype=torch.int32) * HIST_BINS).unsqueeze(1)
    counts = torch.bincount(bins.flatten(), minlength=rows * HIST_BINS).view(rows, HIST_BINS)
    return counts, torch.stack([low, high], dim=1)
