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

from engine.data.results import LayerResult
from engine.errors import ScanCancelled
from engine.scan import fused_block
from engine.scan.block_folds import LayerTallies, RunningExtremes, block_fold
from engine.scan.candidate_scores import candidate_scores
from engine.scan.histogram_pass import HistogramAccumulator
from engine.scan.precision import BlockProduct, ProductPlan, split_columns
from engine.scan.projection import ProjectedUnembed
from engine.settings import ScanSettings

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

CANDIDATE_MARGIN = (
    16  # extra candidates kept beyond k, so float32 rounding cannot push a true top-k token out
)
TOKEN_MARGIN = 8  # likewise for each token's best neurons, which are rescored when a token is queried
_VOCAB_CHUNK = 4096
_EXACT_BATCH = 64


def device_label(device: torch.device) -> str:
    """What computed a layer, the same whichever GPU of a machine it was: cpu, or cuda and its model."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def default_chunk_tokens(d_mlp: int, device: torch.device) -> int:
    """Tokens per block: the block buffers fit the budget.

    On CUDA the budget is half the free memory. On a CPU the numba sweeps need the block alone:
    up to 1,024 tokens and 8 MiB, so a block is read back while it is still in cache (1,024 rows
    measured 3-7% faster than 2,730 on SmolLM2); the eager pass's three buffers get 48 MiB.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # Three float32 buffers and the histogram's int64 keys: five float32-sized, one spare.
        return int(max(64, min(free // 2 // (d_mlp * 4 * 6), 1 << 16)))
    if fused_block.AVAILABLE:
        return int(max(64, min((8 << 20) // (d_mlp * 4), 1024)))
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


def neuron_rows64(
    w_out: torch.Tensor, cosine: bool, transport: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 neuron directions as projected (through the lens, unit norm under --cosine) and
    their norms as read."""
    rows = NeuronRows(w_out, cosine, transport)
    return rows.exact(slice(None)), rows.norms


def neuron_score_row(
    w_row: np.ndarray, unembed: ProjectedUnembed, settings: ScanSettings, transport: np.ndarray | None
) -> np.ndarray:
    """One neuron's float64 scores against the whole vocabulary, read as a scan reads it."""
    row = torch.from_numpy(np.ascontiguousarray(w_row[None, :], dtype=np.float32)).to(unembed.device)
    lens = None if transport is None else torch.from_numpy(transport).to(unembed.device)
    rows64, _ = neuron_rows64(row, settings.projection.cosine, lens)
    return exact_score_rows(rows64, unembed)[0].cpu().numpy()


class NeuronRows:
    """A layer's neuron directions as read: through the lens's J_l when there is one (engine.lens),
    unit norm under --cosine; float64 on demand.

    The float32 weights widen exactly to float64 and J_l w is formed in float64; rows are built a
    batch at a time where they are needed, so an 8B-sized layer never holds a second, float64 copy
    of itself (0.45 GiB). ``norms`` are those of the rows as read (|J_l w| under a lens).
    """

    def __init__(self, w: torch.Tensor, cosine: bool, transport: torch.Tensor | None = None):
        self.w = w
        self.cosine = cosine
        self.transport = transport  # float64 [d_model, d_model] on w's device, or None
        self.count = w.shape[0]
        self.norms = torch.empty(w.shape[0], dtype=torch.float64, device=w.device)
        for start in range(0, w.shape[0], _ROW_BATCH):
            self.norms[start : start + _ROW_BATCH] = self._read(slice(start, start + _ROW_BATCH)).norm(dim=1)
        self._scale = 1.0 / self.norms.clamp_min(torch.finfo(torch.float64).tiny) if cosine else None

    @property
    def transformed(self) -> bool:
        """Whether the rows differ from the float32 weights (and so are rounded for the product)."""
        return self.cosine or self.transport is not None

    def _read(self, rows) -> torch.Tensor:
        wide = self.w[rows].double()
        return wide if self.transport is None else wide @ self.transport.T

    def scale(self, rows) -> torch.Tensor:
        """What each of ``rows`` is multiplied by as projected: 1, or 1/|w| under --cosine."""
        if self._scale is None:
            return torch.ones(self.w[rows].shape[0], dtype=torch.float64, device=self.w.device)
        return self._scale[rows]

    def exact(self, rows) -> torch.Tensor:
        """Float64 rows (a slice or an index tensor), as projected."""
        wide = self._read(rows)
        return wide * self._scale[rows].unsqueeze(1) if self._scale is not None else wide

    def project(self, vector: torch.Tensor) -> torch.Tensor:
        """Each row's float64 dot product with a float64 [d_model] vector."""
        out = torch.empty(self.count, dtype=torch.float64, device=self.w.device)
        for start in range(0, self.count, _ROW_BATCH):
            out[start : start + _ROW_BATCH] = self.exact(slice(start, start + _ROW_BATCH)) @ vector
        return out

    def fast_float32(self) -> torch.Tensor:
        """The rows as read, rounded to float32 [d_mlp, d_model] (the weights themselves when
        nothing transforms them)."""
        if not self.transformed:
            return self.w
        out = torch.empty_like(self.w)
        for start in range(0, self.count, _ROW_BATCH):
            out[start : start + _ROW_BATCH] = self.exact(slice(start, start + _ROW_BATCH))
        return out

    def rows_for_split(self, start: int, stop: int) -> torch.Tensor:
        return self.exact(slice(start, stop)) if self.transformed else self.w[start:stop]


_ROW_BATCH = 1024


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
    transport: np.ndarray | None = None,
    eager: bool = False,
    row_scale: float | None = None,
) -> LayerResult:
    """Scan one layer's W_out [d_mlp, d_model] against the projected unembedding; under a Jacobian
    lens each direction w is read as ``transport @ w`` (J_l, float64 [d_model, d_model]).

    ``progress(done, total)`` counts vocabulary tokens; ``cancelled()`` is polled between blocks.
    ``eager``: fold the blocks with the eager reference pass whatever else the device offers (the
    benchmarks time the compiled pass and the sweeps against it). ``row_scale``: the largest row
    norm the histogram window must hold, when the layer is scanned in parts (its experts) that
    share one window; by default this block's own.
    """
    device = unembed.device
    d_mlp, d_vocab = w_out.shape[0], unembed.d_vocab
    cosine = unembed.projection.cosine
    w = torch.from_numpy(np.ascontiguousarray(w_out, dtype=np.float32)).to(device)
    rows = NeuronRows(w, cosine, None if transport is None else torch.from_numpy(transport).to(device))
    norms = rows.norms
    k = min(top_k, d_vocab)
    n_candidates = min(k + CANDIDATE_MARGIN, d_vocab)
    chunk = chunk_tokens or default_chunk_tokens(d_mlp, device)

    product = _product(unembed, rows, w)
    mean = rows.project(unembed.column_mean)  # exact mean score of each neuron over the vocabulary
    inverse_norm = (torch.ones_like(norms) if cosine else 1.0 / norms.clamp_min(1e-30)).float()
    # |score - mean| <= 2 |w| max|u| (Cauchy-Schwarz): the histogram window's upper end.
    if row_scale is None:
        row_scale = 1.0 if cosine else float(norms.max())
    histogram = HistogramAccumulator(d_mlp, 2 * row_scale * unembed.max_column_norm, device)
    token_keep = min(token_top_n + TOKEN_MARGIN, d_mlp)
    tallies = LayerTallies.empty(d_vocab, n_candidates, token_keep, histogram, mean.float(), inverse_norm)
    fold = block_fold(tallies, chunk, device, eager)
    block_buffer = torch.empty((chunk, d_mlp), device=device)
    for start, stop in _blocks(d_vocab, chunk, n_candidates):
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        block = block_buffer[: stop - start]
        product.multiply(start, stop, block)
        fold.update(block, start, stop)
        if progress is not None:
            progress(stop, d_vocab)
    fold.finish()
    moments = (mean, tallies.mean_fast, tallies.sums)
    ranked = _finish_candidates(tallies.largest, tallies.smallest, rows, unembed, k, product.plan, moments)
    return _layer_result(layer, tallies, ranked, rows, mean, product.plan)


def _layer_result(
    layer: int,
    tallies: LayerTallies,
    ranked: dict[str, torch.Tensor],
    rows: NeuronRows,
    mean: torch.Tensor,
    plan: ProductPlan,
) -> LayerResult:
    """The scan's numbers as a LayerResult (numpy, on the host)."""
    sums, d_vocab = tallies.sums, tallies.unit_best.shape[0]
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
        norm=rows.norms.cpu().numpy(),
        mean=mean.cpu().numpy(),
        std=m2.sqrt().cpu().numpy(),
        skew=(sums[1] / d_vocab / safe_m2.pow(1.5)).cpu().numpy(),
        kurtosis=(sums[2] / d_vocab / safe_m2.pow(2)).cpu().numpy(),
        token_neurons=tallies.token_ids.cpu().numpy().astype(np.int32),
        token_dots=tallies.token_dots.cpu().numpy(),
        token_unit_best=tallies.unit_best.cpu().numpy(),
        token_unit_best_neuron=tallies.unit_best_neuron.cpu().numpy().astype(np.int32),
        score_hist=tallies.histogram.result(),
        score_hist_top=tallies.histogram.top,
        device=device_label(rows.w.device),
        products=plan.label,
    )


class _Float32Product:
    """Blocks of float32 scores from float32 operands: tokens [d_vocab, d] against neurons [d, d_mlp]."""

    def __init__(self, unembed: ProjectedUnembed, neurons: torch.Tensor):
        assert unembed.operand is not None, "a float32 unembedding has a float32 operand"
        self.plan = ProductPlan("float32", unembed.d_model)
        self._tokens = unembed.operand.T
        self._neurons = neurons

    def multiply(self, start: int, stop: int, out: torch.Tensor) -> None:
        torch.matmul(self._tokens[start:stop], self._neurons, out=out)


def _product(unembed: ProjectedUnembed, rows: NeuronRows, w: torch.Tensor) -> _Float32Product | BlockProduct:
    """The layer's block product in the unembedding's precision."""
    if unembed.split is None:
        # A transposed view: the product reads it as it lies, without a second copy of the layer.
        return _Float32Product(unembed, rows.fast_float32().T)
    parts = split_columns(rows.count, unembed.d_model, rows.rows_for_split, w.device, _ROW_BATCH)
    return BlockProduct(unembed.split, parts.transposed(), w.device)


def _finish_candidates(
    largest: RunningExtremes,
    smallest: RunningExtremes,
    rows: NeuronRows,
    unembed: ProjectedUnembed,
    k: int,
    plan: ProductPlan,
    moments: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rescore the candidates in float64, rank them, and recompute rows the bound cannot clear.

    ``moments`` (exact mean, the fast pass's float32 mean, the centred power sums [3, d_mlp]): the
    candidates are the tails that dominate the third and fourth powers, so their fast terms in the
    sums are swapped for float64 ones; rows recomputed in full get float64 sums outright.
    """
    largest.flush()
    smallest.flush()
    pos_ids, neg_ids = largest.ids, smallest.ids
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, rows.count, 128):  # float64 gathers small enough to stay in cache
        batch = slice(start, start + 128)
        pos_exact = candidate_scores(rows, unembed, pos_ids[batch], batch)
        neg_exact = candidate_scores(rows, unembed, neg_ids[batch], batch)
        for name, value in _rank_candidates(pos_ids[batch], pos_exact, neg_ids[batch], neg_exact, k).items():
            parts.setdefault(name, []).append(value)
        _swap_candidate_terms(
            moments,
            batch,
            (pos_ids[batch], largest.values[batch], pos_exact),
            (neg_ids[batch], -smallest.values[batch], neg_exact),
        )
    ranked = {name: torch.cat(chunks) for name, chunks in parts.items()}
    if pos_ids.shape[1] < unembed.d_vocab:
        # Any token outside the candidates scores at most largest's last value + err (at least
        # -(smallest's last value) - err); the exact k-th values must clear that for the ranking
        # to be exact. err bounds the fast product's error for this row (engine.scan.precision).
        row_scale = torch.ones_like(rows.norms) if rows.cosine else rows.norms
        err = plan.coefficient * row_scale * unembed.max_column_norm + plan.underflow * (
            row_scale + unembed.max_column_norm
        )
        pos_last = largest.values[:, -1].double()
        neg_last = -smallest.values[:, -1].double()
        outside = torch.maximum(pos_last, -neg_last) + err
        unsafe = (
            (ranked["promote_dots"][:, -1] <= pos_last + err)
            | (ranked["suppress_dots"][:, -1] >= neg_last - err)
            | (ranked["top_dots"][:, -1].abs() <= outside)
        )
        if bool(unsafe.any()):
            _rescore_rows_fully(ranked, rows, unsafe, unembed, k, moments)
    return ranked


def _swap_candidate_terms(moments, batch: slice, positive, negative) -> None:
    """In the power sums of rows ``batch``, replace each candidate token's fast centred powers by
    float64 ones. ``positive``/``negative``: (ids, fast float32 scores, float64 scores) [rows, c];
    a token among both sets (tiny vocabularies) is swapped once."""
    mean, mean_fast, sums = moments
    pos_ids, pos_fast, pos_exact = positive
    neg_ids, neg_fast, neg_exact = negative
    once = ~(neg_ids.unsqueeze(2) == pos_ids.unsqueeze(1)).any(dim=2)
    fast = torch.cat([pos_fast, torch.where(once, neg_fast, 0.0)], dim=1)
    exact = torch.cat([pos_exact, neg_exact], dim=1)
    counted = torch.cat([torch.ones_like(pos_fast, dtype=torch.bool), once], dim=1)
    centred_fast = (fast - mean_fast[batch].unsqueeze(1)).double()  # as the pass centred them
    centred_exact = exact - mean[batch].unsqueeze(1)
    for power in (2, 3, 4):
        change = torch.where(counted, centred_exact.pow(power) - centred_fast.pow(power), 0.0)
        sums[power - 2, batch] += change.sum(dim=1)


def _rescore_rows_fully(
    ranked: dict[str, torch.Tensor],
    rows: NeuronRows,
    unsafe: torch.Tensor,
    unembed: ProjectedUnembed,
    k: int,
    moments,
) -> None:
    """Replace the rankings and power sums of ``unsafe`` rows with ones from full float64 rows."""
    mean, _mean_fast, sums = moments
    indices = unsafe.nonzero().flatten()
    for batch in indices.split(_EXACT_BATCH):
        full = exact_score_rows(rows.exact(batch), unembed)
        centred = full - mean[batch].unsqueeze(1)
        square = centred * centred
        sums[:, batch] = torch.stack([square.sum(1), (square * centred).sum(1), (square * square).sum(1)])
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
    transport: np.ndarray | None = None,
    row_scale: float | None = None,
) -> LayerResult:
    """Scan a layer (or one expert of it, ``row_scale`` as scan_layer says); when the device runs
    out of memory, halve the block and try again (``on_shrink(new_size)`` hears of each halving)."""
    from engine.errors import UserError
    from engine.runtime.resources import free_device_memory, is_out_of_memory

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
                transport=transport,
                row_scale=row_scale,
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
