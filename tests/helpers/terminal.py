"""The explorer in a real pseudo-terminal, as a terminal emulator (or sshd) would run it; pyte
(a VT100 emulator) keeps the screen as a person would see it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import threading
import time
from pathlib import Path

import pyte

ROOT = Path(__file__).resolve().parents[2]  # the checkout


class Terminal:
    """A child process on the slave side of a pty; this side reads everything it draws."""

    def __init__(self, args: list[str], size: tuple[int, int] = (80, 24), env: dict | None = None):
        cols, rows = size
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", **(env or {})}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the explorer, the pty its controlling terminal
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(sys.executable, [sys.executable, "-m", "tui.cli", *args], full_env)
            finally:
                os._exit(127)
        self.output = bytearray()
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Lock()
        self.closed = False
        self.status: int | None = None
        # hang_up wakes the reader through this pipe: a read left waiting on the terminal would keep
        # it open after os.close (no hang-up reaches the child) until the child next draws.
        self._wake_read, self._wake_write = os.pipe()
        self._drain_on_stop = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd, self._wake_read], [], [])
            if self._wake_read in ready:
                # What an ended child left is read to the end; nothing is waited for.
                while self._drain_on_stop and select.select([self.fd], [], [], 0)[0] and self._take():
                    pass
                return
            if not self._take():
                return

    def _take(self) -> bool:
        """One read of what the child drew; False once its side is gone."""
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:
            return False
        if not chunk:
            return False
        with self._lock:
            self.output += chunk
            self._stream.feed(chunk)
        return True

    def text(self) -> str:
        """The screen as it looks now, one line per row."""
        with self._lock:
            return "\n".join(self.screen.display)

    def wait_for_screen(self, text: str, step: float = 0.05) -> None:
        """Until ``text`` is on the screen, or the child ended."""
        while text not in self.text() and not self.ended():
            time.sleep(step)

    def wait_for(self, text: bytes, step: float = 0.02) -> None:
        """Until ``text`` was drawn, or the child ended (then the caller's assertions tell)."""
        while text not in self.output and not self.ended():
            time.sleep(step)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def hang_up(self) -> None:
        """Close the terminal's side, as a closed window or a dropped SSH connection does: the
        reader stops first, so that the close is the terminal's last."""
        if not self.closed:
            self.closed = True
            self._drain_on_stop = self.status is not None
            os.write(self._wake_write, b"\0")
            self._reader.join()
            for fd in (self.fd, self._wake_read, self._wake_write):
                os.close(fd)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def ended(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is not None

    def wait(self) -> int:
        """The exit code (negative: the signal that ended it), however long it takes."""
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        self.hang_up()
        return os.waitstatus_to_exitcode(self.status)

    def kill(self) -> None:
        if not self.ended():
            os.kill(self.pid, signal.SIGKILL)
            self.wait()
        self.hang_up()
