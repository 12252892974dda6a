"""Text to run a model on: documents, numbered from 0 in input order.

``--corpus`` takes a ``.txt`` file (one document), a folder of ``.txt`` files (one document each,
in sorted name order), a ``.jsonl`` file with a ``"text"`` field per line, or ``hf:NAME[:SPLIT]``
for a dataset already in the local Hugging Face datasets cache (nothing is downloaded). Without it
the embedded default is used: real English text that ships with Python itself (``default_corpus``).

Every check happens here, before a model is loaded, and fails with one line.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

DEFAULT_NAME = "python-docs"
_DEFAULT_CHARACTERS = 1_200_000  # the reference manual (~465k characters) plus docstrings: ~250k tokens


@dataclass(frozen=True)
class Corpus:
    name: str  # what the user passed, or the default's name
    documents: tuple[str, ...]

    @property
    def content_hash(self) -> str:
        """Identifies the text itself (not where it came from): part of every cache key."""
        digest = hashlib.sha256()
        for document in self.documents:
            encoded = document.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
        return digest.hexdigest()[:20]

    @property
    def characters(self) -> int:
        return sum(len(d) for d in self.documents)


def load_corpus(spec: str | None) -> Corpus:
    if spec is None or spec == DEFAULT_NAME:
        return default_corpus()
    if spec.startswith("hf:"):
        return _hf_dataset(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(
            f"corpus {spec} does not exist: pass a .txt or .jsonl file, a folder of .txt files or hf:NAME"
        )
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise UserError(f"corpus folder {spec} holds no .txt files: put one document per .txt file")
        return _checked(spec, [_read_text(p) for p in files])
    if path.suffix == ".jsonl":
        return _checked(spec, _jsonl_documents(path))
    if path.suffix == ".txt":
        return _checked(spec, [_read_text(path)])
    raise UserError(
        f"corpus {spec} is neither .txt nor .jsonl: pass a .txt or .jsonl file, a folder or hf:NAME"
    )


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise UserError(f"corpus file {path} looks binary (it holds NUL bytes): pass UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"corpus file {path} is not valid UTF-8 (byte {error.start}): convert it to UTF-8"
        ) from None


def _jsonl_documents(path: Path) -> list[str]:
    text = _read_text(path)
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
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
        documents.append(record["text"])
    return documents


def _checked(name: str, documents: list[str]) -> Corpus:
    kept = tuple(d for d in documents if d.strip())
    if not kept:
        raise UserError(f"corpus {name} holds no text: pass a corpus with at least one non-empty document")
    return Corpus(name, kept)


def _hf_dataset(spec: str) -> Corpus:
    """``hf:NAME[:SPLIT]`` from the local datasets cache only."""
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
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"dataset {name} (split {split}) is not in the local Hugging Face cache ({first[:120]}): "
            "download it once elsewhere, or pass a .txt or .jsonl file"
        ) from None
    if "text" not in dataset.column_names:
        raise UserError(f'dataset {name} has no "text" column (it has {", ".join(dataset.column_names)})')
    return _checked(spec, [str(t) for t in dataset["text"]])


def default_corpus() -> Corpus:
    """The Python reference manual's text (``pydoc_data.topics``, one document per topic), then the
    docstrings of the standard library's modules, read from its source files with ``ast`` (nothing
    is imported or run), in sorted file order, until about 1.2 million characters."""
    from pydoc_data.topics import topics

    documents = [topics[name] for name in sorted(topics)]
    total = sum(len(d) for d in documents)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if total >= _DEFAULT_CHARACTERS:
            break
        if path.parent.name in ("test", "tests", "idle_test") or path.name.startswith("test"):
            continue
        for text in _docstrings(path):
            documents.append(text)
            total += len(text)
    return Corpus(default_corpus_name(), tuple(documents))


def default_corpus_name() -> str:
    return f"{DEFAULT_NAME} (Python {sys.version_info.major}.{sys.version_info.minor})"


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree] + [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    texts = []
    for node in nodes:
        text = ast.get_docstring(node)
        if text and len(text) >= 200:  # one-liners say little about a neuron
            texts.append(text)
    return texts
