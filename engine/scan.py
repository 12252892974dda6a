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
    n_keep = min(token_top_n, d_mlp)
    n_candidates = min(k + CANDIDATE_MARGIN, d_vocab)
    token_candidates = min(n_keep + CANDIDATE_MARGIN, d_mlp)
    check_bounds = dtype == torch.float32
    gamma = (unembed.d_model + 4) * _FLOAT32_EPS * 1.01
    chunk = chunk_rows or default_chunk_rows(d_vocab, device, dtype)

    parts: dict[str, list[torch.Tensor]] = {}
    token_abs = torch.full((d_vocab, 0), -1.0, device=device)
    token_ids = torch.zeros((d_vocab, 0), dtype=torch.long, device=device)
    fast_norm_max = 0.0
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
        abs_scores = scores.abs()
        merged_abs = torch.cat([token_abs, abs_scores.T], dim=1)
        merged_ids = torch.cat(
            [token_ids, torch.arange(start, stop, device=device).expand(d_vocab, stop - start)], dim=1
        )
        keep = min(token_candidates, merged_abs.shape[1])
        token_abs, position = merged_abs.topk(keep, dim=1)
        token_ids = merged_ids.gather(1, position)
        del abs_scores, merged_abs, merged_ids

        centred = scores.sub_(mean.float().unsqueeze(1))
        squared = centred * centred
        m2 = squared.sum(1, dtype=torch.float64) / d_vocab
        m3 = (squared * centred).sum(1, dtype=torch.float64) / d_vocab
        m4 = squared.pow_(2).sum(1, dtype=torch.float64) / d_vocab
        del centred, squared, scores
        safe_m2 = m2.clamp_min(torch.finfo(torch.float64).tiny)
        stats = {
            "norm": norms,
            "mean": mean,
            "std": m2.sqrt(),
            "skew": m3 / safe_m2.pow(1.5),
            "kurtosis": m4 / safe_m2.pow(2),
        }
        fast_norm_max = max(fast_norm_max, float(rows64.norm(dim=1).max()))
        for name, value in {**ranked, **stats}.items():
            parts.setdefault(name, []).append(value.cpu())
        if progress is not None:
            progress(stop, d_mlp)

    token_neurons, token_dots = _exact_token_neurons(
        w, token_ids, token_abs, unembed, n_keep, cosine, check_bounds, gamma * fast_norm_max
    )
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
        token_neurons=token_neurons,
        token_dots=token_dots,
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


def _exact_token_neurons(
    w: torch.Tensor,
    candidate_ids: torch.Tensor,
    candidate_abs: torch.Tensor,
    unembed: ProjectedUnembed,
    n_keep: int,
    cosine: bool,
    check_bounds: bool,
    row_error: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per token, the ``n_keep`` neurons with the largest exact |score|, from the fast candidates."""
    rows64, _ = _neuron_rows64(w, 0, w.shape[0], cosine)
    d_vocab = unembed.d_vocab
    out_ids = torch.empty((d_vocab, n_keep), dtype=torch.long)
    out_dots = torch.empty((d_vocab, n_keep), dtype=torch.float64)
    for start in range(0, d_vocab, _VOCAB_CHUNK):
        stop = min(start + _VOCAB_CHUNK, d_vocab)
        token = torch.arange(start, stop, device=w.device)
        columns = unembed.exact_columns(token)  # [t, d]
        ids = candidate_ids[start:stop]
        exact = torch.einsum("tnd,td->tn", rows64[ids], columns)
        dots, neurons = _sort_desc(exact, ids, exact.abs())
        if check_bounds and ids.shape[1] < w.shape[0]:
            err = row_error * unembed.column_norms[start:stop]
            unsafe = dots[:, n_keep - 1].abs() <= candidate_abs[start:stop, -1].double() + err
            for local in unsafe.nonzero().flatten().tolist():
                full = rows64 @ columns[local]
                all_ids = torch.arange(w.shape[0], device=w.device).unsqueeze(0)
                d_sorted, n_sorted = _sort_desc(full.unsqueeze(0), all_ids, full.abs().unsqueeze(0))
                dots[local, :n_keep] = d_sorted[0, :n_keep]
                neurons[local, :n_keep] = n_sorted[0, :n_keep]
        out_ids[start:stop] = neurons[:, :n_keep].cpu()
        out_dots[start:stop] = dots[:, :n_keep].cpu()
    return out_ids.numpy().astype(np.int32), out_dots.numpy()
