"""The docs against the code: key tables generated from the bindings, links and paths that exist,
and a commands table that names every command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from textual.binding import Binding

from tests.helpers.cli import ROOT
from tui import keys_doc
from tui.cli.commands import COMMANDS
from tui.widgets.neuron_list import NeuronList

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A word that starts with a top-level folder of the checkout is a repository path (not one that
# follows ~, $VAR or ../: those are the user's folders, or links, checked as links).
PATH = re.compile(r"(?<![\w.$~/-])((?:engine|tui|tests|bench|docs|\.ci)/[\w./-]*)")
MODULE = re.compile(r"(?<![\w./-])((?:engine|tui|tests|bench)(?:\.\w+)+)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`]*`")


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _prose(text: str) -> str:
    """The text without fenced blocks and code spans: what Markdown renders as links and headings."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings (lower case, punctuation dropped, spaces to hyphens,
    a repeated one numbered)."""
    seen: dict[str, int] = {}
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if match := re.match(r"#+ (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            seen[slug if slug not in seen else f"{slug}-{seen[slug]}"] = seen.get(slug, 0) + 1
    return set(seen)


# --- the key tables --------------------------------------------------------------------------------
@pytest.mark.parametrize("table", keys_doc.TABLES, ids=lambda table: table.path)
def test_the_key_tables_are_the_ones_the_bindings_give(table):
    current, wanted = keys_doc.generated(table, ROOT)
    assert current == wanted, f"{table.path}: a key table differs from the bindings; run make docs"


@pytest.mark.parametrize("table", keys_doc.TABLES, ids=lambda table: table.path)
def test_a_changed_binding_makes_the_key_tables_stale(table, monkeypatch):
    added = Binding("x", "cursor_down", "A key added to the list", id="added")
    renamed = [
        Binding(b.key, b.action, f"{b.description}!", show=b.show, id=b.id) for b in NeuronList.BINDINGS
    ]
    for bindings in ([*NeuronList.BINDINGS, added], renamed):
        monkeypatch.setattr(NeuronList, "BINDINGS", bindings)
        current, wanted = keys_doc.generated(table, ROOT)
        assert current != wanted
        assert bindings[-1].description in wanted


def test_the_key_rows_are_the_helps_every_key_and_description_once():
    groups = [
        (
            "first",
            [Binding("right_square_bracket", "a", "Next", key_display="]"), Binding("ctrl+c", "q", "")],
        ),
        ("second", [Binding("right_square_bracket", "a", "Next"), Binding("escape,q", "b", "Back | out")]),
    ]
    assert keys_doc.key_rows(groups) == [("`]`", "Next", "first"), ("`esc`, `q`", "Back | out", "second")]
    assert keys_doc.key_rows(groups, ["second"]) == [
        ("`]`", "Next", "second"),
        ("`esc`, `q`", "Back | out", "second"),
    ]
    assert "| `esc`, `q` | Back \\| out | second |" in keys_doc.markdown_table(keys_doc.key_rows(groups))


def test_a_table_needs_its_two_markers_in_order():
    begin, end = keys_doc.begin_marker("t"), keys_doc.end_marker("t")
    assert keys_doc.rewritten(f"a\n{begin}\nold\n{end}\nb\n", "t", "new\n") == f"a\n{begin}\nnew\n{end}\nb\n"
    for text in ("no markers\n", f"{begin}\n", f"{end}\n{begin}\n", f"{begin}\n{begin}\n{end}\n"):
        with pytest.raises(ValueError):
            keys_doc.rewritten(text, "t", "new\n")


def test_the_generator_starts_no_app_and_imports_no_torch():
    code = (
        "import sys\n"
        "from tui.app import NeuronApp\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('an app was built')\n"
        "NeuronApp.__init__ = refuse\n"
        "from tui import keys_doc\n"
        "code = keys_doc.main(['--check'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


# --- links and paths -------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_relative_link_and_anchor_exists(page):
    missing = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            missing.append(target)
        elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
            missing.append(target)
    assert not missing, f"{_id(page)} links to what is not there: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_repository_path_named_exists(page):
    text = page.read_text(encoding="utf-8")
    named = {path.rstrip(".,") for path in PATH.findall(text)}
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"{_id(page)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_module_named_exists(page):
    missing = [name for name in set(MODULE.findall(page.read_text(encoding="utf-8"))) if not _resolves(name)]
    assert not missing, f"{_id(page)} names modules that do not exist: {sorted(missing)}"


def test_the_patterns_find_paths_and_modules_as_the_pages_write_them():
    text = (
        "see `engine/scan/precision.py`, [a link](../bench/RESULTS.md), tests/unit/. Then "
        "`$NEURON_TUI_DATA_DIR/lenses/`, ~/.cache/neuron-tui and python -m tui.keys_doc; "
        "engine.data.evidence, tui.app.NeuronApp."
    )
    assert PATH.findall(text) == ["engine/scan/precision.py", "tests/unit/."]
    assert MODULE.findall(text) == ["tui.keys_doc", "engine.data.evidence", "tui.app.NeuronApp"]
    assert LINK.findall(text) == ["../bench/RESULTS.md"]
    assert _resolves("tui.app.NeuronApp") and _resolves("engine.data") and _resolves("tests.helpers")
    assert not _resolves("engine.evidence") and not _resolves("tui.app.NoSuchName")


def _resolves(dotted: str) -> bool:
    """``engine.data.evidence``: a package or module of the checkout, optionally followed by names
    its source defines or mentions (``tui.app.NeuronApp``)."""
    parts = dotted.split(".")
    path = ROOT / parts[0]
    for index, part in enumerate(parts[1:], start=1):
        if (path / part).is_dir():
            path = path / part
        elif (path / f"{part}.py").is_file():
            source = (path / f"{part}.py").read_text(encoding="utf-8")
            return all(re.search(rf"\b{name}\b", source) for name in parts[index + 1 :])
        else:
            return False
    return True


# --- the commands table ----------------------------------------------------------------------------
def test_the_readmes_commands_table_names_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `neuron-tui((?: [a-z][a-z-]*)*)", readme, re.MULTILINE)
    assert sorted(word.strip() for word in listed) == sorted(["", *COMMANDS])
