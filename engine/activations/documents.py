"""Corpora as the corpus pass reads them: documents, numbered from 0 in input order, handed out in
pieces (a very long document in pieces of about ``PIECE_CHARACTERS`` characters cut at a line end),
and a content hash that identifies the text whatever it was read from. ``Corpus`` holds its
documents in memory (the built-in corpora, tests); ``StreamedCorpus`` reads them again from disk,
piece by piece (engine.activations.corpus opens both)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

PIECE_CHARACTERS = 1 << 18  # a document longer than this is tokenized in pieces (256k characters)
# Where a long document is cut: after a line end, before a character that is not a space (a seam
# there changes no token for byte-level BPE tokenizers); else between two words; else anywhere.
_LINE_SEAM = re.compile(r"\n(?=\S)")
_WORD_SEAM = re.compile(r"(?<=\S) (?=\S)")


def piece_end(text: str, limit: int) -> int:
    """Where to end the first piece of ``text`` (longer than ``limit``): decided by text[:limit + 1]."""
    window = text[limit // 2 : limit + 1]
    for seam in (_LINE_SEAM, _WORD_SEAM):
        matches = [match.start() for match in seam.finditer(window)]
        if matches:
            return limit // 2 + matches[-1] + (1 if seam is _LINE_SEAM else 0)
    return limit


def split_pieces(text: str, limit: int | None = None) -> Iterator[str]:
    """``text`` in pieces of at most ``limit`` characters (default ``PIECE_CHARACTERS``), the same
    pieces as ``_stream_pieces`` reads from a file."""
    limit = limit or PIECE_CHARACTERS
    while len(text) > limit:
        cut = piece_end(text, limit)
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


Piece = tuple[int, bool, str]  # document number, first piece of its document, text


class Hasher:
    """The content hash: every kept document's UTF-8 length, then its bytes, in order."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.documents = 0
        self.characters = 0

    def document(self, encoded_length: int, parts: Iterable[bytes], characters: int) -> None:
        self.digest.update(encoded_length.to_bytes(8, "little"))
        for part in parts:
            self.digest.update(part)
        self.documents += 1
        self.characters += characters

    @property
    def value(self) -> str:
        return self.digest.hexdigest()[:20]


@dataclass(frozen=True)
class Corpus:
    """Documents held in memory (the built-in corpora, tests): the same interface as a corpus read
    from disk (``StreamedCorpus``)."""

    name: str  # what the user passed, or a built-in corpus's full name
    documents: tuple[str, ...]

    @property
    def content_hash(self) -> str:
        """Identifies the text itself (not where it came from): part of every cache key."""
        hasher = Hasher()
        for document in self.documents:
            encoded = document.encode("utf-8")
            hasher.document(len(encoded), (encoded,), len(document))
        return hasher.value

    @property
    def characters(self) -> int:
        return sum(len(d) for d in self.documents)

    @property
    def n_documents(self) -> int:
        return len(self.documents)

    def pieces(self) -> Iterator[Piece]:
        for number, document in enumerate(self.documents):
            for index, piece in enumerate(split_pieces(document)):
                yield number, index == 0, piece


@dataclass(frozen=True)
class StreamedCorpus:
    """A corpus on disk, checked and hashed when opened and read again, piece by piece, by the pass."""

    name: str
    content_hash: str
    n_documents: int
    characters: int
    # Each kept document as a function that reads it in pieces, in order.
    _documents: Callable[[], Iterator[Callable[[], Iterator[str]]]] = field(repr=False)

    def pieces(self) -> Iterator[Piece]:
        for number, read in enumerate(self._documents()):
            for index, piece in enumerate(read()):
                yield number, index == 0, piece


AnyCorpus = Corpus | StreamedCorpus
