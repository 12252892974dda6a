"""The detail's tables, as Rich renderables built from plain values: a neuron's statistics, the
tokens it promotes and suppresses most (with ids), and another checkpoint's lists beside them."""

from __future__ import annotations

import numpy as np
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from engine.columns import COLUMNS
from engine.data.neurons import LayerNeurons, NeuronStats
from engine.data.results import LayerResult
from engine.data.tokens import Vocabulary
from tui.render import score_style, token_label

TOKEN_CELLS = 14
DETAIL_TOKENS = 50


def _token_cells(token_id: int, dot: float, vocab: Vocabulary) -> list[Text]:
    style = score_style(dot)
    return [
        Text(str(token_id), style="dim"),
        Text(token_label(vocab.text(token_id), TOKEN_CELLS), style=f"bold {style}"),
        Text(f"{dot:+.3f}", style=style),
    ]


def _stat_row(neurons: LayerNeurons, name: str, neuron: int) -> tuple[str, str]:
    column = COLUMNS[name]
    value = column.read(neurons)[neuron]
    if column.kind == "class":
        shown = str(value) or "—"
    else:  # unknown (NaN: a pole that never fired, a statistic not read yet): "—", as in the list
        shown = "—" if value != value else column.detail_format.format(value)
    label = column.detail_label
    if neurons.result.dictionary is not None:  # a feature's direction is its decoder row
        label = label.replace("W_out", "W_dec")
    return label, shown


def stats_table(neurons: LayerNeurons, s: NeuronStats, pairs: int = 1) -> Table:
    """The neuron's statistics: the registry's columns that the detail shows, the null baseline's
    z and percentile once known, and (where computed) how concept-like its two lists are; in
    ``pairs`` name-value columns side by side (two where the panel is wide enough)."""
    rows = _stat_rows(neurons, s)
    table = Table(box=None, show_header=False, padding=(0, 1))
    for _ in range(pairs):
        table.add_column(style="bold")
        table.add_column(justify="right")
    height = -(-len(rows) // pairs)
    for line in range(height):
        cells: list[Text] = []
        for name, value in rows[line::height]:
            cells += [Text(name), Text(value)]  # Text: "[i]" is not markup
        table.add_row(*cells)
    return table


def _stat_rows(neurons: LayerNeurons, s: NeuronStats) -> list[tuple[str, str]]:
    rows = [_stat_row(neurons, "max_dot", s.neuron), _stat_row(neurons, "norm", s.neuron)]
    rows.append(("mean / std", f"{s.mean:+.4f} / {s.std:.4f}"))
    rows += [_stat_row(neurons, name, s.neuron) for name in ("skew", "kurtosis", "class")]
    placed = {"max_dot", "norm", "skew", "kurtosis", "class"}
    for column in COLUMNS.values():  # any other statistic the registry shows in the detail
        if column.detail_label and column.name not in placed and column.values(neurons) is not None:
            rows.append(_stat_row(neurons, column.name, s.neuron))
    if s.null_z is not None:
        rows.append(("null z / pct", f"{s.null_z:+.2f} / {s.null_pct:.1f}%"))
    r, n = neurons.result, s.neuron
    # One token or a concept? over the promote list / the suppress list (where the engine added it).
    pairs = (
        ("words + / −", "{}", r.promote_forms, r.suppress_forms),
        ("coh z + / −", "{:+.1f}", r.promote_coherence_z, r.suppress_coherence_z),
        ("coh dir-z + / −", "{:+.1f}", r.promote_coherence_dir_z, r.suppress_coherence_dir_z),
    )
    if r.has_concepts:
        for name, shown, up, down in pairs:
            if up is not None and down is not None:
                rows.append((name, f"{shown.format(up[n])} / {shown.format(down[n])}"))
    return rows


def promote_suppress_table(
    result: LayerResult, n: int, vocab: Vocabulary, scores: np.ndarray | None = None
) -> Table:
    """The tokens it promotes most and suppresses most, side by side, with their ids: the scan's
    lists, or ``DETAIL_TOKENS`` of each from the exact score row (ties: the lower id first)."""
    if scores is None:
        up_ids, up_dots = result.promote_ids[n], result.promote_dots[n]
        down_ids, down_dots = result.suppress_ids[n], result.suppress_dots[n]
    else:
        up_ids = np.argsort(-scores, kind="stable")[:DETAIL_TOKENS]
        down_ids = np.argsort(scores, kind="stable")[:DETAIL_TOKENS]
        up_dots, down_dots = scores[up_ids], scores[down_ids]
    table = Table(box=None, padding=(0, 1), header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("id", "right"),
        ("+ promotes", "left"),
        ("dot", "right"),
        ("id", "right"),
        ("− suppresses", "left"),
        ("dot", "right"),
    )
    for title, justify in columns:
        table.add_column(Text(title), justify=justify, no_wrap=True)
    for rank in range(len(up_ids)):
        up = _token_cells(int(up_ids[rank]), float(up_dots[rank]), vocab)
        down = _token_cells(int(down_ids[rank]), float(down_dots[rank]), vocab)
        table.add_row(*up, *down)
    return table


def against_lists(name: str, other: LayerResult, mine: LayerResult, n: int, vocab: Vocabulary) -> Text:
    """The other checkpoint's top tokens of this neuron, and which of them this model shares."""
    text = Text(f"\nin {name} (* not in this model's list):\n", style="bold")
    for label, ids, dots, own in (
        ("+", other.promote_ids[n], other.promote_dots[n], set(mine.promote_ids[n].tolist())),
        ("−", other.suppress_ids[n], other.suppress_dots[n], set(mine.suppress_ids[n].tolist())),
    ):
        text.append(f"{label} ")
        for token_id, dot in zip(ids[:10].tolist(), dots[:10].tolist()):
            text.append(token_label(vocab.text(int(token_id)), TOKEN_CELLS), style=score_style(dot))
            text.append("" if token_id in own else "*")
            text.append(f" {dot:+.2f}  ", style="dim")
        text.append("\n")
    return text
