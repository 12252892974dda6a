"""Starting the explorer from parsed command-line arguments."""

from __future__ import annotations

import argparse
import signal
import sys


def launch_explorer(args: argparse.Namespace) -> int:
    from engine.cli import engine_from_args

    engine = engine_from_args(args)  # bad input fails here, before the terminal is taken over
    from tui.app import NeuronApp

    app = NeuronApp(engine, start_layer=args.layer)

    def hang_up(_signum, _frame) -> None:
        # The SSH connection dropped: leave like 'q' does; workers stop at their next chunk.
        app.call_later(app.exit, 129)

    previous = signal.signal(signal.SIGHUP, hang_up)
    try:
        code = app.run()
    finally:
        signal.signal(signal.SIGHUP, previous)
        for worker in app.workers:
            worker.cancel()
        engine.close()
    for warning in engine.warnings:
        print(warning, file=sys.stderr)
    return code if isinstance(code, int) else 0
