"""Running the explorer in a real terminal, and making sure it ends when the terminal goes away.

Textual's own shutdown can block when the terminal has vanished under it (a writer thread stuck
on a full queue, an input thread spinning on a closed pseudo-terminal), so two guards stand
beside it: a monitor that notices the terminal is gone and asks the app to leave as a hang-up
does, and a watchdog that ends the process a few seconds after any exit was asked for. Ending the
process there is safe for the cache: it only ever holds whole layers (SQLite transactions).
"""

from __future__ import annotations

import os
import signal
import sys
import termios
import threading

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings

GRACE_SECONDS = 3.0  # a clean exit has this long before the watchdog ends the process
TERMINAL_POLL_SECONDS = 0.5


def arm_watchdog(code: int, grace: float = GRACE_SECONDS) -> None:
    """End the process with ``code`` after ``grace`` seconds unless it has ended by then."""
    timer = threading.Timer(grace, os._exit, (code,))
    timer.daemon = True
    timer.start()


def _terminal_alive(fd: int) -> bool:
    try:
        termios.tcgetattr(fd)  # a hung-up pseudo-terminal answers EIO
        return True
    except (termios.error, OSError):
        return False


def _watch_terminal(fd: int, stop: threading.Event) -> None:
    """Ask the app to leave, as SIGHUP does, once the terminal is gone."""
    while not stop.wait(TERMINAL_POLL_SECONDS):
        if not _terminal_alive(fd):
            arm_watchdog(128 + signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGHUP)
            return


def run_explorer(
    engine: NeuronEngine,
    settings: ScanSettings,
    start_layer: int | None,
    activation=None,
    corpus=None,
    against=None,
) -> int:
    """``activation`` (ActivationSettings) and ``corpus`` (a loaded Corpus, or None for the embedded
    one) are what the corpus pass (A) runs with."""
    from tui.app import NeuronApp

    app = NeuronApp(
        engine,
        settings,
        start_layer=start_layer,
        handle_signals=True,
        on_exit=arm_watchdog,
        activation=activation,
        corpus=corpus,
        against=against,
    )
    stop = threading.Event()
    monitor = threading.Thread(target=_watch_terminal, args=(sys.stdin.fileno(), stop), daemon=True)
    monitor.start()
    try:
        app.run()
    finally:
        app.log_handler.remove()  # also when the app never got to unmount
        stop.set()
        for worker in app.workers:
            worker.cancel()
    if app.fatal_exception is not None:
        raise app.fatal_exception  # the command line reports it as an internal error
    if app.fatal_error:
        raise UserError(app.fatal_error)
    return app.return_code or 0
