"""Turning token strings and scores into Rich ``Text``: never markup, so token text cannot style
or break the screen (``[/]`` or an ANSI escape shows as typed)."""

from __future__ import annotations

from rich.text import Text

from engine.data.tokens import display_token

POSITIVE = "green"
NEGATIVE = "red"
MAX_TOKEN_CELLS = 18


def token_label(text: str, limit: int = MAX_TOKEN_CELLS) -> str:
    shown = display_token(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def signed_token(text: str, dot: float, limit: int = MAX_TOKEN_CELLS, digits: int = 2) -> Text:
    """``␣coming +2.61``: the token coloured by sign, then its score."""
    colour = POSITIVE if dot >= 0 else NEGATIVE
    out = Text(token_label(text, limit), style=f"bold {colour}")
    out.append(f" {dot:+.{digits}f}", style=colour)
    return out


def score_style(dot: float) -> str:
    return POSITIVE if dot >= 0 else NEGATIVE
