"""The command line as a dispatcher: every command and group answers --help, the dispatcher and its
commands stay small, and the help says what the code does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, run_cli
from tui.cli import COMMANDS, EXPLORER, main
from tui.cli.commands import GROUPS

EVERY_HELP = [[], *(name.split() for name in COMMANDS), *([group] for group in GROUPS)]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as leaving:  # argparse's --help
        return int(leaving.code or 0)


@pytest.mark.parametrize("words", EVERY_HELP, ids=lambda words: " ".join(words) or "explorer")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_and_group_answers_help_with_exit_0(words, flag, capsys):
    assert _exit_code([*words, flag]) == 0
    shown = capsys.readouterr()
    assert shown.out.startswith(f"usage: neuron-tui {' '.join(words)}".strip()) and not shown.err
    if words in ([group] for group in GROUPS):  # a group lists its commands
        members = [name.split()[1] for name in COMMANDS if name.split()[0] == words[0]]
        assert all(member in shown.out for member in members)


def test_a_group_alone_is_refused_in_one_line():
    done = run_cli("lens")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "neuron-tui: error: 'neuron-tui lens' takes one command: fit (see 'neuron-tui lens fit --help')"
    ]


def test_the_dtype_help_says_how_many_parts_the_split_makes(capsys):
    from engine.scan.precision import MAX_PARTS

    assert _exit_code(["scan", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    words = {2: "two", 3: "three", 4: "four"}
    assert f"split into up to {words[MAX_PARTS]} bf16 parts" in shown
    assert "split into two bf16 parts" not in shown or MAX_PARTS == 2


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (f"{path.name}:{node.name}", node.end_lineno - node.lineno + 1)  # type: ignore[operator]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_the_dispatcher_is_short_and_every_command_has_its_module():
    cli = ROOT / "tui" / "cli"
    assert len((cli / "__init__.py").read_text().splitlines()) <= 150
    longest = max((f for path in cli.rglob("*.py") for f in _functions(path)), key=lambda f: f[1])
    assert longest[1] <= 80, longest
    for command in [EXPLORER, *COMMANDS.values()]:  # each command's run lives beside its options
        assert command.run.__module__ != "tui.cli", command.name
