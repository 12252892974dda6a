"""Keys in one burst, in a real terminal: tmux delivers all the keys of one ``send-keys`` at once,
as a slow SSH link does. A dialog gets the keys typed after its opening key, its Enter submits it
once, and the next key acts on the screen below; the explorer never ends on a burst. Run at 80x24
and 120x40, without colour, from another working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.terminal import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("tmux"), reason="tmux gives the explorer a real terminal"),
]


def _pane(session: str) -> str:
    done = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
    return done.stdout


def _until_on_screen(session: str, text: str, ended: Path) -> str:
    """Wait for ``text`` on the pane (a state, however long the machine takes); the pane then."""
    while True:
        pane = _pane(session)
        if text in pane:
            return pane
        assert not ended.exists(), f"the explorer ended waiting for {text!r}:\n{pane}"
        time.sleep(0.05)


def _keys(session: str, *keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, *keys], check=True)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_keys_sent_in_one_burst_each_reach_their_widget(tiny_gguf, tmp_path, size):
    session = f"ntui-burst-{os.getpid()}-{size[0]}"
    ended = tmp_path / "exit"
    command = (
        f"cd {tmp_path} && TERM=xterm NO_COLOR=1 HOME={tmp_path} NEURON_TUI_DATA_DIR={tmp_path / 'data'} "
        f"PYTHONPATH={ROOT} {sys.executable} -m tui.cli --model {tiny_gguf} --device cpu "
        f"--cache-dir {tmp_path / 'cache'}; echo $? > {ended}"
    )
    cols, rows = size
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows), command])
    try:
        _until_on_screen(session, "all 3 layers computed", ended)
        _keys(session, "g", "57", "Enter", "Enter")  # go to, then open its detail
        _until_on_screen(session, "L2/N57", ended)
        # Back (Escape and f together reach it as Alt+f), filter; the j moves the cursor.
        _keys(session, "Escape", "f", "kurt>3", "Enter", "j")
        pane = _until_on_screen(session, "kurtosis>3", ended)
        assert "Layer 2 / 2" in pane
        _keys(session, "g", "0:7", "Enter", "Enter")  # another layer, then its neuron's detail
        _until_on_screen(session, "L0/N7", ended)
        _keys(session, "q", "q")
        while not ended.exists():
            time.sleep(0.05)
        assert ended.read_text().strip() == "0", _pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
