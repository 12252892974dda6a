"""One token or a concept? Numbers over each neuron's top-k ``promote`` (and ``suppress``) tokens.

Definitions (exports and tests rely on them), for one list of k tokens with scores s_j:

- ``forms``: distinct normalised forms among the k tokens (engine.scan.forms: a leading space marker
  dropped, casefolded, surrounding punctuation stripped; tokens left empty count nowhere). 1 or 2
  is one word in its spellings (`` Paris``, ``Paris``, ``PARIS``); more is several words.
- ``form_share``: the share of the list's summed |s_j| held by its most frequent form (ties: the
  form with the larger summed |s|).
- ``coherence``: the mean pairwise cosine of the k tokens' W_U columns, as projected (the same
  projection flags as the scores).
- ``coherence_z``: (coherence − μ) / σ, μ and σ the mean and standard deviation of the same
  quantity over ``COHERENCE_SAMPLES`` random sets of k distinct tokens (seeded). A large z means
  the tokens are far more alike in the unembedding than tokens picked at random.
- ``coherence_dir_z``: the same against the top-k tokens of ``DIRECTION_SAMPLES`` random
  directions (seeded Gaussian in d_model, scored in float64 through the same projection). Any
  top-k list is more alike than random tokens, because its tokens share the direction that chose
  them; this z asks whether the neuron's tokens are more alike than that selection alone makes
  them: the stricter test of a concept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.data.results import LayerResult
from engine.scan.forms import distinct_forms, top_form_share

COHERENCE_SAMPLES = 2000
COHERENCE_SEED = 0
DIRECTION_SAMPLES = 256
_CHUNK_BYTES = 8 << 20  # float64 columns per chunk of the vocabulary: small enough to reuse
_ROWS = 256


@dataclass(frozen=True)
class CoherenceNull:
    mean: float
    std: float


def mean_pairwise_cosine(columns: torch.Tensor) -> torch.Tensor:
    """[n, k, d] float64 columns -> [n] the mean cosine over the k(k-1)/2 pairs (0 for k < 2)."""
    k = columns.shape[1]
    if k < 2:
        return torch.zeros(columns.shape[0], dtype=torch.float64, device=columns.device)
    unit = columns / torch.linalg.vector_norm(columns, dim=2, keepdim=True).clamp_min(1e-300)
    total = unit.sum(dim=1)
    # sum over all ordered pairs (i != j) of u_i . u_j = |sum u|^2 - sum |u_i|^2
    square = (total * total).sum(dim=1) - (unit * unit).sum(dim=(1, 2))
    return square / (k * (k - 1))


def coherence(ids: np.ndarray, exact_columns) -> np.ndarray:
    """Per row of token ids [n, k], the mean pairwise cosine of their projected W_U columns;
    ``exact_columns(ids tensor) -> float64 [.., d_model]`` (engine.scan.projection)."""
    out = np.empty(ids.shape[0])
    for start in range(0, ids.shape[0], _ROWS):
        part = torch.from_numpy(ids[start : start + _ROWS].astype(np.int64))
        out[start : start + _ROWS] = mean_pairwise_cosine(exact_columns(part)).cpu().numpy()
    return out


def coherence_null(d_vocab: int, k: int, exact_columns) -> CoherenceNull:
    """Mean pairwise cosine of random sets of k distinct tokens: its mean and standard deviation."""
    rng = np.random.default_rng(COHERENCE_SEED)
    sets = np.stack([rng.choice(d_vocab, size=k, replace=False) for _ in range(COHERENCE_SAMPLES)])
    values = coherence(sets, exact_columns)
    return CoherenceNull(float(values.mean()), float(values.std()))


def direction_coherence_null(d_vocab: int, d_model: int, k: int, exact_columns) -> CoherenceNull:
    """Mean pairwise cosine of the top-k tokens (largest float64 score, ties by lower id) of
    seeded random directions: its mean and standard deviation."""
    generator = torch.Generator().manual_seed(COHERENCE_SEED)
    directions = torch.randn((DIRECTION_SAMPLES, d_model), generator=generator, dtype=torch.float64)
    values = coherence(top_token_ids(directions, d_vocab, k, exact_columns), exact_columns)
    return CoherenceNull(float(values.mean()), float(values.std()))


def top_token_ids(
    directions: torch.Tensor, d_vocab: int, k: int, exact_columns, chunk: int | None = None
) -> np.ndarray:
    """[n, k] the ids of each direction's k largest float64 scores, ties by lower id.

    A running list is merged with each chunk of the vocabulary: every id kept is lower than the
    chunk's, so one stable sort of (kept, chunk) orders ties by id, and the result is a stable
    sort of all the scores, without holding them (a [256, d_vocab] float64 block and its sort
    were 0.8 GiB at a vocabulary of 128k)."""
    n = directions.shape[0]
    chunk = chunk or max(256, _CHUNK_BYTES // (8 * directions.shape[1]))
    kept_scores = torch.empty((n, 0), dtype=torch.float64)
    kept_ids = torch.empty((n, 0), dtype=torch.long)
    for start in range(0, d_vocab, chunk):
        ids = torch.arange(start, min(start + chunk, d_vocab))
        scores = torch.cat([kept_scores, directions @ exact_columns(ids).cpu().T], dim=1)
        every_id = torch.cat([kept_ids, ids.expand(n, -1)], dim=1)
        order = torch.argsort(-scores, dim=1, stable=True)[:, :k]
        kept_scores, kept_ids = scores.gather(1, order), every_id.gather(1, order)
    return kept_ids.numpy()


@dataclass(frozen=True)
class TokenSetNumbers:
    forms: np.ndarray  # [d_mlp] int32
    form_share: np.ndarray  # [d_mlp] float64
    coherence: np.ndarray  # [d_mlp] float64
    coherence_z: np.ndarray  # [d_mlp] float64
    coherence_dir_z: np.ndarray  # [d_mlp] float64


def _z(value: np.ndarray, null: CoherenceNull) -> np.ndarray:
    return (value - null.mean) / null.std if null.std > 0 else np.full(value.shape, np.nan)


def token_set_numbers(
    ids: np.ndarray,
    scores: np.ndarray,
    token_forms: np.ndarray,
    exact_columns,
    null: CoherenceNull,
    direction_null: CoherenceNull,
) -> TokenSetNumbers:
    """The numbers of one list per neuron: ``ids`` / ``scores`` [d_mlp, k], ``token_forms`` each
    token's form number (-1: none)."""
    forms = token_forms[ids]
    value = coherence(ids, exact_columns)
    return TokenSetNumbers(
        forms=distinct_forms(forms),
        form_share=top_form_share(forms, np.abs(scores)),
        coherence=value,
        coherence_z=_z(value, null),
        coherence_dir_z=_z(value, direction_null),
    )


ConceptNulls = tuple[CoherenceNull, CoherenceNull]  # (random token sets, random directions' top-k)


def concept_nulls(unembed, top_k: int) -> ConceptNulls:
    """The two coherence baselines of lists of ``top_k`` tokens under this projected unembedding."""

    def exact_columns(ids):
        return unembed.exact_columns(ids.to(unembed.device))

    return (
        coherence_null(unembed.d_vocab, top_k, exact_columns),
        direction_coherence_null(unembed.d_vocab, unembed.d_model, top_k, exact_columns),
    )


def with_concepts(result: LayerResult, unembed, token_forms: np.ndarray, nulls: ConceptNulls) -> LayerResult:
    """The layer with its "one token or a concept?" numbers for both lists."""

    def exact_columns(ids):
        return unembed.exact_columns(ids.to(unembed.device))

    promote = token_set_numbers(result.promote_ids, result.promote_dots, token_forms, exact_columns, *nulls)
    suppress = token_set_numbers(
        result.suppress_ids, result.suppress_dots, token_forms, exact_columns, *nulls
    )
    return replace(
        result,
        promote_forms=promote.forms,
        promote_form_share=promote.form_share,
        promote_coherence=promote.coherence,
        promote_coherence_z=promote.coherence_z,
        promote_coherence_dir_z=promote.coherence_dir_z,
        suppress_forms=suppress.forms,
        suppress_form_share=suppress.form_share,
        suppress_coherence=suppress.coherence,
        suppress_coherence_z=suppress.coherence_z,
        suppress_coherence_dir_z=suppress.coherence_dir_z,
    )
