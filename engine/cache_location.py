"""Where the cache lives when nobody says: one place per user (or per source checkout), whatever
the working directory, so that `neuron-tui` from any folder finds what an earlier run computed."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "NEURON_TUI_CACHE_DIR"
PROJECT_NAME = 'name = "neuron-tui"'


def source_checkout() -> Path | None:
    """The project folder when this code runs from a source checkout (an editable install too)."""
    root = Path(__file__).resolve().parent.parent
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
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "neuron-tui", "$XDG_CACHE_HOME/neuron-tui"
    return Path.home() / ".cache" / "neuron-tui", "~/.cache/neuron-tui"
