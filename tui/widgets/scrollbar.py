"""Scroll bars drawn in whole cells, the thumb as a line (┃ down the side, ━ along the bottom).

Textual's own bars smooth the thumb's ends with partial blocks (▂ ▄ ▆, ▊ ▍) whose meaning is their
colour: without colour, or read as text, they are stray blocks in mid-screen (between the detail's
lists and its plots, inside the help, at the end of table rows). Here a cell is thumb or track, and
the thumb's glyph says so without colour. Clicks on the track and drags of the thumb work as in
Textual's bars (the same mouse metadata).
"""

from __future__ import annotations

from rich.color import Color
from rich.segment import Segment, Segments
from rich.style import Style
from textual.containers import VerticalScroll
from textual.scrollbar import ScrollBar, ScrollBarRender

THUMB_VERTICAL = "┃"
THUMB_HORIZONTAL = "━"


def thumb_span(size: int, virtual_size: float, window_size: float, position: float) -> tuple[int, int]:
    """The cells [start, end) of a track ``size`` cells long that the thumb covers."""
    thumb = max(1, min(size, round(window_size / virtual_size * size)))
    travel = virtual_size - window_size
    start = round(position / travel * (size - thumb)) if travel > 0 else 0
    start = max(0, min(size - thumb, start))
    return start, start + thumb


class CellScrollBarRender(ScrollBarRender):
    @classmethod
    def render_bar(
        cls,
        size: int = 25,
        virtual_size: float = 50,
        window_size: float = 20,
        position: float = 0,
        thickness: int = 1,
        vertical: bool = True,
        back_color: Color | None = None,
        bar_color: Color | None = None,
    ) -> Segments:
        width = thickness if vertical else 1
        track = " " * width
        thumb = " " * (width - 1) + (THUMB_VERTICAL if vertical else THUMB_HORIZONTAL)
        back = Style(bgcolor=back_color)
        if window_size and size and virtual_size and size != virtual_size:
            start, end = thumb_span(int(size), virtual_size, window_size, position)
            upper = Segment(track, back + Style(meta={"@mouse.down": "scroll_up"}))
            lower = Segment(track, back + Style(meta={"@mouse.down": "scroll_down"}))
            grab = Segment(thumb, back + Style(color=bar_color, bold=True, meta={"@mouse.down": "grab"}))
            segments = [upper] * start + [grab] * (end - start) + [lower] * (int(size) - end)
        else:
            segments = [Segment(track, back)] * int(size)
        if vertical:
            return Segments(segments, new_lines=True)
        return Segments((segments + [Segment.line()]) * thickness, new_lines=False)


class CellScrollBars:
    """Mixed into a scrolling widget (before the widget class): its scroll bars draw in whole cells."""

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        bar = super().vertical_scrollbar  # type: ignore[misc]
        bar.renderer = CellScrollBarRender
        return bar

    @property
    def horizontal_scrollbar(self) -> ScrollBar:
        bar = super().horizontal_scrollbar  # type: ignore[misc]
        bar.renderer = CellScrollBarRender
        return bar


class CellScroll(CellScrollBars, VerticalScroll):
    """A VerticalScroll with a one-cell scroll bar in whole cells."""

    DEFAULT_CSS = "CellScroll { scrollbar-size-vertical: 1; }"
