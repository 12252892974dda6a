"""Neurons and a dictionary's features side by side, in the detail: a feature's dictionary, its
closest neurons by |cosine| of their write directions (a neuron's closest features while a
dictionary is open), each one key away (1-5), and, once a corpus pass over the features has run,
how much of its target the dictionary reconstructs and how many of its features never fired; and
whether a dictionary's features can be negative at all (most cannot: then they have no − pole)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from engine.data.dictionary import DictionaryInfo, UnitNeighbours
from engine.data.evidence import LayerActivations
from tui.neuron_ref import UnitNames

CLOSEST_KEYS = 5  # 1-5 open the closest units of the other kind
PER_LINE = 3  # "1 L29/F16383 -0.123" is 19 cells: three to a line in the 64-cell panel


def takes_negative_values(info: DictionaryInfo | None) -> bool:
    """Whether a dictionary's features can be negative: ReLU, top-k, group max, gated and
    JumpReLU after a ReLU never are; circuit-tracer's JumpReLU (pre where pre > threshold, with no
    ReLU) is where its threshold is negative. Unknown (None): they may be."""
    return info is None or (info.format == "circuit-tracer" and info.architecture == "jumprelu")


@dataclass(frozen=True)
class Closest:
    """What the detail needs to set a unit beside the other kind: the dictionary's line (for a
    feature), how the other kind is named, and ``find()``: the layer's neighbours (slow the first
    time: it may read the weights, so a worker calls it)."""

    dictionary: str | None
    other: UnitNames
    find: Callable[[], UnitNeighbours]


def closest_view(
    closest: Closest,
    neighbours: UnitNeighbours | None,
    layer: int,
    unit: int,
    evidence: LayerActivations | None,
    error: str | None = None,
) -> Text:
    """A few lines under the statistics: the dictionary and the corpus (for a feature), then the
    closest units of the other kind, each with its key, its signed cosine and a link."""
    text = Text()
    if closest.dictionary is not None:
        text.append("dictionary ", style="bold")
        text.append(f"{closest.dictionary}\n")
        text.append(_corpus_line(evidence))
    text.append(f"closest {closest.other.word}s ", style="bold")
    text.append(f"(|cos| of write directions; 1-{CLOSEST_KEYS} opens one)\n", style="dim")
    if error is not None:
        return text.append(f"cannot set them side by side: {error}", style="dim")
    if neighbours is None:
        return text.append("reading the weights…", style="dim")
    for rank, (other_id, cosine) in enumerate(neighbours.of(unit)[:CLOSEST_KEYS]):
        link = Style(meta={"@click": f"screen.closest({rank})"}, underline=True)
        text.append("  " if rank % PER_LINE else ("\n" if rank else ""))
        text.append(f"{rank + 1} ", style="bold")
        text.append(closest.other.ref(layer, other_id), style=link)
        text.append(f" {cosine:+.3f}")
    return text


def _corpus_line(evidence: LayerActivations | None) -> Text:
    """The dictionary over the corpus, where a pass over its features has run."""
    if evidence is None:
        return Text("over the corpus: no pass over these features yet (A runs one)\n", style="dim")
    parts = [f"{evidence.dead_share:.1%} of features never fired"]
    if evidence.explained_variance is not None:  # None for a cross-layer transcoder
        parts.insert(0, f"explained variance {evidence.explained_variance:.1%}")
    return Text(f"over the corpus: {' · '.join(parts)}\n")
