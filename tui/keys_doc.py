"""The docs' key tables, generated from the explorer's bindings, never typed by hand.

``python -m tui.keys_doc`` (``make docs``) rewrites each table between its marker comments: every
view's keys in docs/keys.md, the main views' keys in README.md. ``--check`` writes nothing and exits
1 when a table differs from the bindings; tests/unit/test_docs.py holds the same check, so a binding
changed without regenerating the docs fails the tests. The rows are those the help (``?``) shows:
``NeuronApp.binding_groups()``, each key and description once. No app is started and no model is
loaded (the bindings are class attributes), and nothing here imports torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from textual.binding import Binding

from tui.app import NeuronApp
from tui.screens.help import typed

ROOT = Path(__file__).resolve().parents[1]  # the checkout the docs live in
DESCRIPTION = "Regenerate the docs' key tables from the explorer's bindings."
MAIN_VIEWS = ("anywhere", "main view", "layer view", "neuron list", "neuron detail")


@dataclass(frozen=True)
class KeyTable:
    """A generated table: the file it sits in (from the checkout), its marker name, and the views it
    lists (None: every view)."""

    path: str
    name: str
    views: tuple[str, ...] | None


TABLES = (
    KeyTable("README.md", "main views", MAIN_VIEWS),
    KeyTable("docs/keys.md", "every view", None),
)


def binding_groups() -> list[tuple[str, list[Binding]]]:
    """Every binding, grouped by view, as the help reads them."""
    # binding_groups reads only class attributes (each view's BINDINGS), so the class stands in for
    # an app: nothing is constructed, and no engine, model or terminal is needed.
    return NeuronApp.binding_groups(cast(NeuronApp, NeuronApp))


def key_rows(
    groups: Sequence[tuple[str, list[Binding]]], views: Sequence[str] | None = None
) -> list[tuple[str, str, str]]:
    """(keys, what it does, view) per binding with a description, each key and description once
    (the first view that has it), as the help lists them; only ``views`` when given."""
    rows: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for where, bindings in groups:
        if views is not None and where not in views:
            continue
        for binding in bindings:
            if not binding.description or (binding.key, binding.description) in seen:
                continue
            seen.add((binding.key, binding.description))
            rows.append((_keys(binding), binding.description, where))
    return rows


def _keys(binding: Binding) -> str:
    if binding.key_display:
        return _code(binding.key_display)
    return ", ".join(_code(typed(key.strip())) for key in binding.key.split(","))


def _code(text: str) -> str:
    """``text`` as a Markdown code span that survives a table (a backtick or a bar in a key)."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def markdown_table(rows: Sequence[tuple[str, str, str]]) -> str:
    lines = ["| key | does | where |", "|---|---|---|"]
    lines += [f"| {keys} | {does.replace('|', chr(92) + '|')} | {where} |" for keys, does, where in rows]
    return "\n" + "\n".join(lines) + "\n\n"  # blank lines: the table is its own block between the markers


def begin_marker(name: str) -> str:
    return (
        f"<!-- keys: {name}. Generated from the bindings by `python -m tui.keys_doc` (make docs): "
        "change the bindings, then regenerate; do not edit by hand. -->"
    )


def end_marker(name: str) -> str:
    return f"<!-- end of keys: {name} -->"


def rewritten(text: str, name: str, table: str) -> str:
    """``text`` with the lines between the two markers named ``name`` replaced by ``table``."""
    begin, end = begin_marker(name), end_marker(name)
    lines = text.splitlines(keepends=True)
    stripped = [line.rstrip("\n") for line in lines]
    if stripped.count(begin) != 1 or stripped.count(end) != 1:
        raise ValueError(f"expected one line {begin!r} and one line {end!r}")
    first, last = stripped.index(begin), stripped.index(end)
    if last < first:
        raise ValueError(f"{end!r} comes before {begin!r}")
    return "".join(lines[: first + 1]) + table + "".join(lines[last:])


def generated(table: KeyTable, root: Path = ROOT) -> tuple[str, str]:
    """(the file as it is, the file with its table generated from the bindings)."""
    text = (root / table.path).read_text(encoding="utf-8")
    rows = key_rows(binding_groups(), table.views)
    return text, rewritten(text, table.name, markdown_table(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.keys_doc", description=DESCRIPTION)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for table in TABLES:
        try:
            current, wanted = generated(table)
        except (OSError, ValueError) as error:
            print(f"{table.path}: {error}", file=sys.stderr)
            return 2
        if current != wanted:
            stale.append(table.path)
            if not args.check:
                (ROOT / table.path).write_text(wanted, encoding="utf-8")
    verb = "stale (run python -m tui.keys_doc)" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "the key tables match the bindings")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
