"""Warnings as notifications while the explorer owns the terminal.

Logging is the one channel for warnings. On the command line they go to stderr; while the explorer
runs, stderr is the screen it draws on, so a line written there would land under it. For as long
as the app runs, the root logger's handlers are set aside and this one shows each warning (from
any thread, each text once) as a notification.
"""

from __future__ import annotations

import logging
import threading

from textual.app import App


class NotifyHandler(logging.Handler):
    def __init__(self, app: App) -> None:
        super().__init__(logging.WARNING)
        self.app = app
        self.shown: set[str] = set()
        self._saved: list[logging.Handler] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().removeprefix("warning: ")
        if text in self.shown:
            return
        self.shown.add(text)
        try:
            if threading.current_thread() is threading.main_thread():
                self.app.notify(text, severity="warning", timeout=15)
            else:
                self.app.call_from_thread(self.app.notify, text, severity="warning", timeout=15)
        except RuntimeError:  # the app has stopped: nothing left to show it on
            pass

    def install(self) -> None:
        """Take over the root logger's output (the stderr handler set aside) until ``remove``."""
        root = logging.getLogger()
        if self._saved is None:
            self._saved = list(root.handlers)
            root.handlers = [self]

    def remove(self) -> None:
        if self._saved is not None:
            logging.getLogger().handlers = self._saved
            self._saved = None
