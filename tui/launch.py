"""Starting the explorer from parsed command-line arguments."""

from __future__ import annotations

import argparse
import sys


def launch_explorer(args: argparse.Namespace) -> int:
    from engine.cli import engine_from_args

    engine = engine_from_args(args)  # bad input fails here, before the terminal is taken over
    from tui.app import NeuronApp

    app = NeuronApp(engine, start_layer=args.layer, handle_signals=True)
    try:
        app.run()
    finally:
        for worker in app.workers:
            worker.cancel()
        engine.close()
    try:
        for warning in engine.warnings:
            print(warning, file=sys.stderr)
    except OSError:
        pass  # the terminal is gone (SSH dropped): nothing left to tell
    return app.return_code or 0
