"""What each view shows at 80x24 and at 120x40: the status line's order of giving way (the marked
count always there), the coverage view's best-neuron and layers columns, the detail's plots with
their titles and axis labels, its input side inside its panel, the all-layers legend beside the
data, and scroll bars drawn in whole cells."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rich.cells import cell_len
from textual.app import App
from textual.widget import Widget
from textual_plotext import PlotextPlot

from engine.data.coverage import Coverage
from engine.data.tokens import Vocabulary
from tests.helpers.app import answer_prompt, make_app, settle, wait_for
from tui.screens.all_layers import AllLayersScreen
from tui.screens.coverage import CoverageScreen
from tui.screens.detail import NeuronDetailScreen
from tui.screens.help import HelpScreen
from tui.widgets.status_bar import Status, status_text

SMALL, BIG = (80, 24), (120, 40)
SIZES = pytest.mark.parametrize("size", [SMALL, BIG], ids=lambda s: f"{s[0]}x{s[1]}")

LONG_ACTIVITY = "corpus pass (L29): 12,000 of 50,000 tokens · 1,200 tok/s · 40 s left · A stops"
LONG_FILTER = "filter class=suppression, kurtosis>10.0, null_z>3.0"
STATUS = Status(
    model="SmolLM2-135M-Instruct.Q4_1",
    device="cpu",
    projection="fold+center+cosine",
    projection_short="fold+ctr+cos",
    layer=29,
    last_layer=29,
    marked=3,
    activity=LONG_ACTIVITY,
    sort="max-dot ↓",
    filter_text=LONG_FILTER,
)


# --- the status line --------------------------------------------------------------------------
# The progress beside the line: none, its percentage (below 100 columns) or a bar (from 100).
@pytest.mark.parametrize("columns, progress", [(60, 0), (60, 6), (80, 0), (80, 6), (120, 0), (120, 16)])
def test_the_status_line_fits_and_keeps_the_marked_count(columns, progress):
    line = status_text(STATUS, columns - progress)
    assert line.cell_len <= columns - progress
    assert "3 marked" in line.plain and "fold+ctr+cos" in line.plain
    assert "Layer 29 / 29" in line.plain or "L29/29" in line.plain
    if columns >= 80:  # the background work and the filter are there too, shortened
        assert "corpus pass" in line.plain and "filter cl" in line.plain, line.plain


# What is lost first as the line narrows, in the order the module docstring states.
FEATURES = [
    ("the whole model name", lambda s: "SmolLM2-135M-Instruct.Q4_1" in s),
    ("the model name", lambda s: "SmolLM" in s),
    ("the full projection", lambda s: "fold+center+cosine" in s),
    ("the device", lambda s: "cpu" in s),
    ("the whole background work", lambda s: LONG_ACTIVITY in s),
    ("the whole filter", lambda s: LONG_FILTER in s),
    ("Layer N / M", lambda s: "Layer 29 / 29" in s),
    ("the background work", lambda s: "corpus pass" in s),
    ("the filter's words", lambda s: "filter cl" in s),
    ("the sort", lambda s: "max-dot ↓" in s),
]


def test_the_status_line_gives_way_in_the_stated_order():
    widths = range(260, 30, -1)
    shown = {name: [seen(status_text(STATUS, width).plain) for width in widths] for name, seen in FEATURES}
    last_seen = {}
    for name, flags in shown.items():
        assert flags[0], f"{name} is shown when there is room"
        lost = flags.index(False) if False in flags else len(flags)
        assert not any(flags[lost:]), f"{name} comes back on a narrower line"
        last_seen[name] = lost
    order = [name for name, _ in FEATURES]
    assert [last_seen[name] for name in order] == sorted(last_seen.values()), last_seen
    assert all("3 marked" in status_text(STATUS, width).plain for width in range(20, 261))


def test_the_kind_of_unit_listed_stays_and_its_set_name_gives_way_last():
    status = dataclasses.replace(STATUS, units="features: a-long-dictionary-set")
    widths = range(260, 57, -1)  # narrower, the line is cut at its end (the marks kept)
    lines = [status_text(status, width).plain for width in widths]
    assert all("features: " in line and "L29/29" in line and "3 marked" in line for line in lines[-5:])
    named = ["a-long-dictionary-set" in line for line in lines]
    lost = named.index(False)
    assert not any(named[lost:]) and "max-dot" not in lines[lost], "shortened after the sort is dropped"
    assert all("features: " in line and "3 marked" in line for line in lines)
    assert status_text(status, 80).plain.startswith(" L29/29 · features: a-long-dictionary-set · ")


async def test_the_status_line_at_80_columns_shows_marks_filter_and_background_work(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await pilot.press("space", "space", "space")
        await answer_prompt(pilot, app, "f", "kurtosis>0, null_z>-100, max_dot>0")
        app.main.status.set_activity(LONG_ACTIVITY, 0.79)
        await pilot.pause()
        line = str(app.query_one("#status-text").render())
        assert "3 marked" in line and "corpus pass" in line and "filter kurt" in line, line
        assert cell_len(line) <= 80 - 6, "the percentage alone beside it at 80 columns"
        await pilot.resize_terminal(*BIG)
        await pilot.pause()
        line = str(app.query_one("#status-text").render())
        assert "3 marked" in line and "Layer 2 / 2" in line and "filter kurtosis>0.0, null_z" in line, line
        assert "corpus pass" in line and cell_len(line) <= 120 - 16, line


# --- coverage ---------------------------------------------------------------------------------
class _CoverageApp(App[None]):
    """Only the coverage view, with the widest values a 30-layer model of 1,536 neurons has."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        tokens = [f" a-very-long-token-{i}".encode() for i in range(49152)]
        self.vocab = Vocabulary.from_bytes(tokens)
        layers = list(range(30))
        self.coverage = Coverage(
            threshold=0.9,
            layers=layers,
            covered_per_layer={layer: 49152 if layer == 0 else 12345 for layer in layers},  # 100.0%
            best_unit=rng.uniform(0.1, 12.0, len(tokens)),
            best_layer=np.full(len(tokens), 29),
            best_neuron=np.full(len(tokens), 1535),
            covered_layers=np.full(len(tokens), 30),
        )

    def on_mount(self) -> None:
        self.push_screen(CoverageScreen("SmolLM2-135M-Instruct.Q4_1", "raw", self.coverage, self.vocab, 30))


def _fits(table) -> bool:
    """Every column of the table is whole on screen: none is cut or scrolled out of sight."""
    return sum(column.get_render_width(table) for column in table.columns.values()) <= (
        table.scrollable_content_region.width
    )


@SIZES
async def test_coverage_keeps_the_best_neuron_and_layers_columns(size):
    app = _CoverageApp()
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CoverageScreen))
        await pilot.pause()
        for table_id in ("best-tokens", "worst-tokens", "per-layer"):
            table = app.screen.query_one(f"#{table_id}")
            assert _fits(table), f"{table_id} is cut at {size}"
        titles = [str(column.label) for column in app.screen.query_one("#best-tokens").columns.values()]
        assert "best neuron" in titles and any(title.startswith("layers") for title in titles)
        assert str(app.screen.query_one("#best-tokens").get_row_at(0)[3]) == "L29:1535"


# --- the detail -------------------------------------------------------------------------------
async def _detail(pilot, app) -> NeuronDetailScreen:
    await settle(pilot, app)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
    detail = app.screen
    await wait_for(pilot, lambda: detail.inputs is not None and detail.scores_settled)
    await pilot.pause()
    return detail


@SIZES
async def test_the_detail_plots_keep_titles_and_axis_labels(tiny_gguf, tmp_path, size):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=size) as pilot:
        detail = await _detail(pilot, app)
        panel = detail.query_one("#detail-tokens")
        scores, null = (
            detail.query_one("#score-hist", PlotextPlot),
            detail.query_one("#null-hist", PlotextPlot),
        )
        for plot, words in (
            (scores, ("its dots with all", "dot")),
            (null, ("random directions", "per unit")),
        ):
            assert plot.size.width >= 34 and plot.size.height >= 9, f"{plot.id} is {plot.size} at {size}"
            drawn = plot.render().plain
            assert all(word in drawn for word in words), drawn
        if size == SMALL:  # under the lists, side by side
            assert scores.region.y >= panel.region.bottom and null.region.x >= scores.region.right
        else:  # beside the lists, a blank column between the panel and the plots' axis labels
            assert scores.region.x - panel.region.right >= 1


@SIZES
async def test_the_detail_input_side_and_text_lines_fit_their_panel(tiny_gguf, tmp_path, size):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=size) as pilot:
        detail = await _detail(pilot, app)
        room = detail.query_one("#detail-tokens").scrollable_content_region.width
        lines = detail.io_text.plain.splitlines()
        assert any(line.startswith("gate +") for line in lines) and any("out +" in line for line in lines)
        widest = max(cell_len(line.rstrip()) for line in lines)
        assert widest <= room, f"an input-side line of {widest} cells in a panel of {room}"


# --- all layers -------------------------------------------------------------------------------
async def test_all_layers_legend_is_outside_the_data_with_a_marker_per_line(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AllLayersScreen))
        await pilot.pause()
        screen = app.screen
        legend = str(screen.query_one("#max-dot-legend").render())
        for entry in ("o p50", "+ p90", "x p99", "# max"):
            assert entry in legend, legend
        drawn = screen.query_one("#max-dot-by-layer", PlotextPlot).render().plain
        assert "p50" not in drawn and "max" not in drawn, "no legend drawn over the data"
        inside = "".join(line.split("┤", 1)[1] for line in drawn.splitlines() if "┤" in line)
        assert {"o", "+", "x", "#"} <= set(inside), "each quantile's line has its own marker"
        assert "⠁" not in inside and "⢕" not in inside, "no braille: it cannot tell the lines apart"


# --- scroll bars ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [5, 13, 24])
def test_scroll_bars_are_whole_cells_with_a_thumb_that_reads_without_colour(size):
    from tui.widgets.scrollbar import THUMB_VERTICAL, CellScrollBarRender

    for virtual in (size + 1, 3 * size, 100 * size):
        window = size
        tops = []
        for position in np.linspace(0, virtual - window, 9):
            bar = CellScrollBarRender.render_bar(size, virtual, window, float(position))
            cells = [segment.text for segment in bar.segments]
            cells = [text for text in cells if text != "\n"]
            assert len(cells) == size and set(cells) <= {" ", THUMB_VERTICAL}
            thumb = [index for index, text in enumerate(cells) if text == THUMB_VERTICAL]
            assert thumb and thumb == list(range(thumb[0], thumb[-1] + 1)), "one thumb, at least a cell"
            tops.append(thumb[0])
        assert tops[0] == 0 and tops[-1] + len(thumb) == size and tops == sorted(tops)


def _shown_scroll_bars(screen) -> list[tuple[Widget, list]]:
    """Each widget with a scroll bar on screen (one of some size), and its bars."""
    shown = []
    for widget in screen.walk_children(with_self=False):
        if not isinstance(widget, Widget):
            continue
        bars = (
            [widget.vertical_scrollbar]
            if widget.show_vertical_scrollbar and widget.scrollbar_size_vertical
            else []
        )
        if widget.show_horizontal_scrollbar and widget.scrollbar_size_horizontal:
            bars.append(widget.horizontal_scrollbar)
        if bars:
            shown.append((widget, bars))
    return shown


@pytest.mark.parametrize("view", ["main", "detail", "help", "coverage"])
async def test_every_scroll_bar_on_screen_is_drawn_in_whole_cells(tiny_gguf, tmp_path, view):
    from tui.widgets.scrollbar import CellScrollBarRender

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        expected = {
            "main": None,
            "detail": NeuronDetailScreen,
            "help": HelpScreen,
            "coverage": CoverageScreen,
        }
        key = {"detail": "enter", "help": "question_mark", "coverage": "c"}.get(view)
        if key is not None:
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, expected[view]))
        await pilot.pause()
        scrolling = _shown_scroll_bars(app.screen)
        assert scrolling, f"something scrolls in the {view} view at 80x24"
        for widget, bars in scrolling:
            for bar in bars:
                assert bar.renderer is CellScrollBarRender, f"{widget!r} draws partial blocks"
