"""The ``neuron-tui`` command: the explorer by default, headless commands by name."""

from __future__ import annotations

import os
import signal
import sys

from engine.errors import UserError


def _run(argv: list[str]) -> int:
    from engine import cli

    cli.configure_logging()
    if argv and argv[0] in cli.COMMANDS:
        command, rest = argv[0], argv[1:]
        if command == "scan":
            return cli.run_scan(rest)
        if command == "layers":
            return cli.run_layers(rest)
        if command == "tokens":
            return cli.run_tokens(rest)
        if command == "coverage":
            return cli.run_coverage(rest)
    args = cli.build_parser().parse_args(argv)
    from tui.launch import launch_explorer

    return launch_explorer(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except UserError as error:
        print(f"neuron-tui: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuron-tui: interrupted; the cache keeps every layer finished so far", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as error:
        if os.environ.get("NEURON_TUI_DEBUG"):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"neuron-tui: internal error: {type(error).__name__}: {first}; "
            "rerun with NEURON_TUI_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
