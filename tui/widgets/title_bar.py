"""The one-line title at the top of a view (and of the layer picker).

A view whose title may be longer than the screen is wide gives it as variants, longest first
(``fit``): the first that fits the bar's width is shown, chosen again as the bar is resized, and the
last is cut with an ellipsis where even it does not fit. So a title gives way in the order its view
states, never by wrapping out of sight what comes last."""

from __future__ import annotations

from typing import Self

from rich.text import Text
from textual.app import RenderResult
from textual.widgets import Static


class TitleBar(Static):
    DEFAULT_CSS = """
    TitleBar { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    """

    variants: tuple[Text, ...] = ()

    def fit(self, *variants: str | Text) -> Self:
        """Show the first of ``variants`` (longest first) that fits the bar's width."""
        self.variants = tuple(Text(v) if isinstance(v, str) else v for v in variants)
        self.refresh()
        return self

    @property
    def shown(self) -> Text:
        """The variant that fits the bar's width now (the last, cut, where none does)."""
        width = self.content_size.width
        if width <= 0:  # not laid out yet
            return self.variants[0]
        for variant in self.variants:
            if variant.cell_len <= width:
                return variant
        cut = self.variants[-1].copy()
        cut.truncate(width, overflow="ellipsis")
        return cut

    def render(self) -> RenderResult:
        return self.shown if self.variants else super().render()
