"""The explorer's main screen and its panes (``screen`` composes them)."""

from tui.screens.main.screen import MainScreen

__all__ = ["MainScreen"]
