"""Text to run a model on: documents, numbered from 0 in input order.

``--corpus`` takes a ``.txt`` file (one document), a folder of ``.txt`` files (one document each,
in sorted name order), a ``.jsonl`` file with a ``"text"`` field per line, or ``hf:NAME[:SPLIT]``
for a dataset already in the local Hugging Face datasets cache (nothing is downloaded). It also takes
the name of a built-in corpus (``engine.activations.builtin_corpora``); without it the default is
used, general English prose installed with the project (``default_corpus``).

Corpora on disk are never held whole: opening one reads it once as a stream (checking it and
hashing its content, in blocks), and the pass reads it again as a stream of pieces, a document at a
time and a very long document in pieces of about ``PIECE_CHARACTERS`` characters cut at a line end,
so memory is bounded by a piece, not by the corpus, and a token cap stops the reading. Every check
happens when the corpus is opened, before a model is loaded, and fails with one line.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from engine.activations import documents
from engine.activations.documents import AnyCorpus, Corpus, Hasher, StreamedCorpus, split_pieces
from engine.errors import UserError, first_line

_READ_BYTES = 1 << 20  # files are read in blocks of this size


def load_corpus(spec: str | None) -> AnyCorpus:
    """The corpus ``spec`` names: None for the default, a built-in corpus's name
    (``engine.activations.builtin_corpora``: a name wins over a file of the same name; write
    ``./NAME`` for the file), ``hf:NAME[:SPLIT]``, or a path."""
    from engine.activations.builtin_corpora import BUILTIN, DEFAULT, builtin_corpus, builtin_name

    if spec is None:
        return builtin_corpus(DEFAULT)
    named = builtin_name(spec)
    if named is not None:
        return builtin_corpus(named)
    if spec.startswith("hf:"):
        return _hf_dataset(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(
            f"corpus {spec} does not exist: pass {' or '.join(BUILTIN)}, a .txt or .jsonl file, "
            "a folder of .txt files or hf:NAME"
        )
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise UserError(f"corpus folder {spec} holds no .txt files: put one document per .txt file")
        return _text_files(spec, files)
    if path.suffix == ".jsonl":
        return _jsonl(spec, path)
    if path.suffix == ".txt":
        return _text_files(spec, [path])
    raise UserError(
        f"corpus {spec} is neither .txt nor .jsonl: pass a .txt or .jsonl file, a folder or hf:NAME"
    )


# --- .txt files ---------------------------------------------------------------------------------
def _blocks(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            while block := handle.read(_READ_BYTES):
                yield block
    except OSError as error:
        raise UserError(f"cannot read corpus file {path}: {error.strerror}") from None


def _check_text_file(path: Path, hasher: Hasher) -> bool:
    """Read ``path`` once: refuse NUL bytes and invalid UTF-8, hash it if it holds text. False:
    only white space (the document is left out, as an empty one is)."""
    try:
        size = path.stat().st_size  # valid UTF-8 is its own encoding: the document's encoded length
    except OSError as error:
        raise UserError(f"cannot read corpus file {path}: {error.strerror}") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    trial = hasher.digest.copy()  # kept only if the file holds text
    trial.update(size.to_bytes(8, "little"))
    read, characters, has_text = 0, 0, False
    for block in _blocks(path):
        if b"\x00" in block:
            raise UserError(f"corpus file {path} looks binary (it holds NUL bytes): pass UTF-8 text")
        try:
            text = decoder.decode(block)
        except UnicodeDecodeError as error:
            raise UserError(
                f"corpus file {path} is not valid UTF-8 (byte {read + error.start}): convert it to UTF-8"
            ) from None
        trial.update(block)
        read += len(block)
        characters += len(text)
        has_text = has_text or (bool(text) and not text.isspace())
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UserError(f"corpus file {path} is not valid UTF-8 (it ends inside a character)") from None
    if read != size:
        raise UserError(f"corpus file {path} changed while it was read: let it finish, then try again")
    if not has_text:
        return False
    hasher.digest = trial
    hasher.documents += 1
    hasher.characters += characters
    return True


def _stream_pieces(path: Path) -> Iterator[str]:
    """The file's text in the pieces ``split_pieces`` would cut it into, read a block at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    for block in _blocks(path):
        buffer += decoder.decode(block)
        limit = documents.PIECE_CHARACTERS
        while len(buffer) > limit:  # piece_end needs limit + 1 characters, and has them
            cut = documents.piece_end(buffer, limit)
            yield buffer[:cut]
            buffer = buffer[cut:]
    buffer += decoder.decode(b"", final=True)
    yield from split_pieces(buffer)


def _text_files(name: str, files: list[Path]) -> StreamedCorpus:
    hasher = Hasher()
    kept = tuple(path for path in files if _check_text_file(path, hasher))
    if not kept:
        raise UserError(f"corpus {name} holds no text: pass a corpus with at least one non-empty document")

    def documents() -> Iterator[Callable[[], Iterator[str]]]:
        for path in kept:
            yield partial(_stream_pieces, path)

    return StreamedCorpus(name, hasher.value, hasher.documents, hasher.characters, documents)


# --- .jsonl files ---------------------------------------------------------------------------------
def _jsonl_texts(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line with a non-empty text, read a line at a time."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise UserError(f"cannot read corpus file {path}: {error.strerror}") from None
    offset = 0
    with handle:
        for number, raw in enumerate(handle, start=1):
            if b"\x00" in raw:
                raise UserError(f"corpus file {path} looks binary (it holds NUL bytes): pass UTF-8 text")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UserError(
                    f"corpus file {path} is not valid UTF-8 (byte {offset + error.start}): "
                    "convert it to UTF-8"
                ) from None
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(
                    f"{path} line {number} is not JSON ({error.msg}): one JSON object per line"
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise UserError(
                    f'{path} line {number} has no "text" string field: each line needs {{"text": ...}}'
                )
            if record["text"].strip():
                yield number, record["text"]


def _jsonl(name: str, path: Path) -> StreamedCorpus:
    hasher = Hasher()
    for _, text in _jsonl_texts(path):
        encoded = text.encode("utf-8")
        hasher.document(len(encoded), (encoded,), len(text))
    if not hasher.documents:
        raise UserError(f"corpus {name} holds no text: pass a corpus with at least one non-empty document")

    def documents() -> Iterator[Callable[[], Iterator[str]]]:
        for _, text in _jsonl_texts(path):
            yield partial(split_pieces, text)

    return StreamedCorpus(name, hasher.value, hasher.documents, hasher.characters, documents)


# --- datasets -----------------------------------------------------------------------------------
def _hf_dataset(spec: str) -> StreamedCorpus:
    """``hf:NAME[:SPLIT]`` from the local datasets cache only (memory-mapped Arrow files, read a
    row at a time)."""
    parts = spec[3:].split(":")
    name, split = parts[0], (parts[1] if len(parts) > 1 else "train")
    if not name:
        raise UserError("hf: needs a dataset name, as in hf:NAME or hf:NAME:SPLIT")
    import os

    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise UserError("hf: corpora need the datasets package: pip install datasets") from None
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as error:  # datasets raises many types for a missing local copy
        first = first_line(error)
        raise UserError(
            f"dataset {name} (split {split}) is not in the local Hugging Face cache ({first[:120]}): "
            "download it once elsewhere, or pass a .txt or .jsonl file"
        ) from None
    if "text" not in dataset.column_names:
        raise UserError(f'dataset {name} has no "text" column (it has {", ".join(dataset.column_names)})')

    def texts() -> Iterator[str]:
        for row in dataset.select_columns(["text"]):
            text = str(row["text"])
            if text.strip():
                yield text

    hasher = Hasher()
    for text in texts():
        encoded = text.encode("utf-8")
        hasher.document(len(encoded), (encoded,), len(text))
    if not hasher.documents:
        raise UserError(f"corpus {spec} holds no text: pass a corpus with at least one non-empty document")

    def documents() -> Iterator[Callable[[], Iterator[str]]]:
        for text in texts():
            yield partial(split_pieces, text)

    return StreamedCorpus(spec, hasher.value, hasher.documents, hasher.characters, documents)


def default_corpus() -> Corpus:
    """The corpus used without ``--corpus`` (``engine.activations.builtin_corpora``)."""
    from engine.activations.builtin_corpora import DEFAULT, builtin_corpus

    return builtin_corpus(DEFAULT)


def default_corpus_name() -> str:
    """The default corpus's full name, known without building it."""
    from engine.activations.builtin_corpora import DEFAULT, full_name

    return full_name(DEFAULT)
