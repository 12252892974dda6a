"""The command line: which command, its arguments parsed, one exit code.

Each command lives in its own module with its own options (``tui.cli.commands`` holds the headless
ones, ``tui.cli.explorer`` the explorer); the options several share are declared once in
``tui.cli.options``. Imports run command line -> tui -> engine and never back; ``neuron-tui --help``
imports neither torch nor Textual.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from engine.errors import UserError, describe
from tui.answers import chosen_layers
from tui.cli.commands import COMMANDS, GROUPS
from tui.cli.explorer import EXPLORER
from tui.cli.opening import WarningFormatter, opened_engine, scan_settings
from tui.cli.options import PROGRAM, Command, OneLineParser

__all__ = ["COMMANDS", "EXPLORER", "main", "scan_settings"]


def _command(argv: list[str]) -> tuple[Command | None, list[str]]:
    """The command ``argv`` names (two words, one, or none: the explorer) and its arguments; None
    for a group's word alone (``neuron-tui lens``)."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return COMMANDS[name], argv[words:]
    if argv and argv[0] in GROUPS:
        return None, argv
    return EXPLORER, argv


def _group(argv: list[str]) -> int:
    """A group's word alone: with --help, its commands (exit 0); otherwise one line (exit 2)."""
    group = argv[0]
    members = [name.split(" ", 1)[1] for name in COMMANDS if name.startswith(f"{group} ")]
    if argv[1:2] not in (["-h"], ["--help"]):
        unknown = f"unknown command {argv[1]!r}: " if argv[1:] else ""
        raise UserError(
            f"{unknown}'{PROGRAM} {group}' takes one command: {', '.join(members)} "
            f"(see '{PROGRAM} {group} {members[0]} --help')"
        )
    parser = OneLineParser(
        prog=f"{PROGRAM} {group}",
        description=GROUPS[group],
        epilog=f"'{PROGRAM} {group} COMMAND --help' lists a command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for member in members:
        description = COMMANDS[f"{group} {member}"].description
        commands.add_parser(member, help=description.split(" (")[0].split(". ")[0])
    parser.print_help()
    return 0


def _dispatch(argv: list[str]) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(WarningFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    command, argv = _command(argv)
    if command is None:
        return _group(argv)
    args = command.parser().parse_args(argv)
    if command.takes_terminal and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(
            "the explorer needs a terminal on stdin and stdout; for scripts use 'neuron-tui scan' "
            "(or layers, tokens, coverage)"
        )
    with opened_engine(command, args) as (engine, settings):
        layers = chosen_layers(engine, settings, args.layers) if command.takes("layers") else []
        return command.run(args, engine, settings, layers)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except UserError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; the cache keeps every layer finished so far", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as error:
        if os.environ.get("NEURON_TUI_DEBUG"):
            raise
        print(
            f"{PROGRAM}: internal error: {describe(error)}; "
            "rerun with NEURON_TUI_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 1
