"""The one-line title at the top of a view (and of the layer picker)."""

from __future__ import annotations

from textual.widgets import Static


class TitleBar(Static):
    DEFAULT_CSS = """
    TitleBar { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    """
