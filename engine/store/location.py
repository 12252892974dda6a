"""Where the cache lives when nobody says: one place per user (or per source checkout), whatever
the working directory, so that `neuron-tui` from any folder finds what an earlier run computed.
The user's folders come from platformdirs: on Linux ``$XDG_CACHE_HOME/neuron-tui`` (else
``~/.cache/neuron-tui``) and ``$XDG_DATA_HOME/neuron-tui`` (else ``~/.local/share/neuron-tui``)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "neuron-tui"
CACHE_ENV = "NEURON_TUI_CACHE_DIR"
DATA_ENV = "NEURON_TUI_DATA_DIR"
PROJECT_NAME = 'name = "neuron-tui"'


def source_checkout() -> Path | None:
    """The project folder when this code runs from a source checkout (an editable install too)."""
    root = Path(__file__).resolve().parents[2]  # engine/store/location.py -> the checkout
    try:
        return root if PROJECT_NAME in (root / "pyproject.toml").read_text(encoding="utf-8") else None
    except OSError:
        return None


def default_cache_dir() -> tuple[Path, str]:
    """The cache directory and why: $NEURON_TUI_CACHE_DIR, else the checkout's .cache/, else
    $XDG_CACHE_HOME/neuron-tui or ~/.cache/neuron-tui."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser(), f"${CACHE_ENV}"
    checkout = source_checkout()
    if checkout is not None:
        return checkout / ".cache", "the source checkout's .cache/"
    folder = Path(platformdirs.user_cache_dir(APP, appauthor=False))
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute() and folder == Path(xdg) / APP:
        return folder, "$XDG_CACHE_HOME/neuron-tui"
    return folder, str(folder).replace(str(Path.home()), "~", 1)


def default_data_dir() -> Path:
    """Where user data (collections) lives: ``$NEURON_TUI_DATA_DIR``, else the user's data folder."""
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir(APP, appauthor=False))
