"""A corpus as the activation pass sees it: every token position numbered once, in (document,
position) order, and cut into windows and batches that do not depend on how many processes run.

A position's global index orders it by document, then position, so "lower document, then lower
position" is simply "lower index". A document longer than the context is cut into consecutive
windows of that length; batches are fixed groups of consecutive windows, so each batch is computed
with the same shapes whichever process runs it (and results are byte-identical across process
counts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.activations.documents import AnyCorpus
from engine.errors import UserError


@dataclass
class TokenizedCorpus:
    """Every position of the corpus, flat: ``token_ids[g]`` is at ``doc[g]``, ``position[g]``."""

    token_ids: np.ndarray  # int64 [n]
    doc: np.ndarray  # int32 [n]
    position: np.ndarray  # int32 [n]
    next_ids: np.ndarray  # int64 [n]: the token at position + 1 of the same document, -1 at its end
    windows: list[tuple[int, int]]  # [start, stop) global index ranges

    @property
    def n_positions(self) -> int:
        return int(self.token_ids.shape[0])

    def batches(self, windows_per_batch: int) -> list[list[tuple[int, int]]]:
        return [
            self.windows[i : i + windows_per_batch] for i in range(0, len(self.windows), windows_per_batch)
        ]

    def prefix(self, n_positions: int) -> TokenizedCorpus:
        """The first ``n_positions`` positions, as a pass capped there would have read them: the
        windows that end by then, and each position's next token as it is (``n_positions`` falls
        on a window's end, so no window is cut)."""
        if n_positions >= self.n_positions:
            return self
        return TokenizedCorpus(
            token_ids=self.token_ids[:n_positions],
            doc=self.doc[:n_positions],
            position=self.position[:n_positions],
            next_ids=self.next_ids[:n_positions],
            windows=[window for window in self.windows if window[1] <= n_positions],
        )

    def next_token_counts(self, d_vocab: int) -> np.ndarray:
        """How often each token is some position's next token (positions without one count nowhere)."""
        has_next = self.next_ids >= 0
        return np.bincount(self.next_ids[has_next], minlength=d_vocab)


def tokenize_corpus(
    corpus: AnyCorpus,
    encode: Callable[[str], list[int]],
    context: int,
    max_tokens: int | None,
    encode_more: Callable[[str], list[int]] | None = None,
) -> TokenizedCorpus:
    """``encode(text)`` is the tokenizer as ``tokenizer(text)["input_ids"]`` gives it by default;
    ``encode_more`` tokenizes the later pieces of a long document (no special tokens: they are not
    its start). The corpus is read a piece at a time and reading stops once ``max_tokens``
    positions (and the token after the last of them) are known."""
    encode_more = encode_more or encode
    ids_parts: list[np.ndarray] = []
    doc_parts: list[np.ndarray] = []
    position_parts: list[np.ndarray] = []
    next_parts: list[np.ndarray] = []
    windows: list[tuple[int, int]] = []
    total = 0
    doc_start, doc_length = 0, 0  # the current document's first global index and tokens kept
    held: tuple[int, np.ndarray] | None = None  # a piece whose last token's successor is not known yet

    def emit(number: int, ids: np.ndarray, following: np.ndarray) -> None:
        nonlocal total, doc_length
        if max_tokens is not None:
            ids, following = ids[: max_tokens - total], following[: max_tokens - total]
        ids_parts.append(ids)
        next_parts.append(following)
        doc_parts.append(np.full(ids.size, number, dtype=np.int32))
        position_parts.append(np.arange(doc_length, doc_length + ids.size, dtype=np.int32))
        total += ids.size
        doc_length += ids.size

    def end_document() -> None:
        """Windows of ``context`` tokens from the document's start, over the tokens kept."""
        nonlocal doc_start, doc_length
        for start in range(0, doc_length, context):
            windows.append((doc_start + start, doc_start + min(start + context, doc_length)))
        doc_start, doc_length = total, 0

    def full() -> bool:
        return max_tokens is not None and total >= max_tokens

    for number, first, text in corpus.pieces():
        ids = np.asarray((encode if first else encode_more)(text), dtype=np.int64)
        if held is not None:
            held_number, held_ids = held
            if held_number == number and ids.size:  # the next token is this piece's first (real text)
                emit(held_number, held_ids, np.append(held_ids[1:], ids[0]))
                held = None
            elif held_number != number:
                emit(held_number, held_ids, np.append(held_ids[1:], -1))  # a document's last token
                held = None
                end_document()
        if full():
            break
        if ids.size and held is None:
            held = (number, ids)
    else:
        if held is not None:
            emit(held[0], held[1], np.append(held[1][1:], -1))
    if doc_length:
        end_document()
    if total == 0:
        raise UserError(f"corpus {corpus.name} gives no tokens: pass a corpus with text in it")
    return TokenizedCorpus(
        token_ids=np.concatenate(ids_parts),
        doc=np.concatenate(doc_parts),
        position=np.concatenate(position_parts),
        next_ids=np.concatenate(next_parts),
        windows=windows,
    )
