"""The per-neuron columns, each defined once: its one name (what filters, sort keys and exports
say), its title on screen, how its values are read off a layer, how they print, what an unknown
value means, and the words a user may type for it.

Sorting, filtering, the neuron list, the detail and the collection all read this registry, so a new
per-neuron statistic is a new entry here (and its computation in the scan or the corpus pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engine.data.neurons import LayerNeurons

Kind = Literal["number", "class"]


@dataclass(frozen=True)
class NeuronColumn:
    name: str  # the one spelling: filters, sort keys, export fields
    title: str  # the list's header (short: the list is about 55 cells wide at 80 columns)
    values: Callable[[LayerNeurons], np.ndarray | None]  # None: not known for this layer yet
    list_format: str = "{:.3f}"  # in the list and the collection
    detail_label: str = ""  # in the detail's statistics ("" : not shown there on its own)
    detail_format: str = "{:.4f}"
    kind: Kind = "number"
    aliases: tuple[str, ...] = ()  # other words a user may type (the title always works)
    descending: bool = True  # the natural sort order: largest first
    # An unknown value (NaN: no corpus pass for the layer, a constant row) is shown as "—", sorts
    # last and passes no filter condition; ``unknown_as`` replaces it instead where a number is right.
    unknown_as: float | None = None
    # Written into scan records (JSON by name, CSV after ``device``) beside the classic fields;
    # the classic ones (max_dot, norm, skew, kurtosis, class, null_z...) keep their own places.
    exported: bool = False
    filterable: bool = True  # f accepts conditions on it
    whole: bool = False  # a count: exported as an integer
    words: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "words", (self.name, self.title, *self.aliases))

    def read(self, neurons: LayerNeurons) -> np.ndarray:
        """Values for every neuron of the layer; unknown ones NaN (or ``unknown_as``)."""
        values = self.values(neurons)
        if values is None:
            if self.kind == "class":
                return np.full(neurons.d_mlp, "", dtype=object)
            return np.full(neurons.d_mlp, np.nan if self.unknown_as is None else self.unknown_as)
        if self.kind == "number" and self.unknown_as is not None:
            return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=self.unknown_as)
        return values

    def cell(self, value: float | str) -> str:
        """The list's text for one value."""
        if self.kind == "class":
            return CLASS_TAGS.get(str(value), "")
        number = float(value)
        return "—" if number != number else self.list_format.format(number)


CLASS_TAGS = {"prediction": "pred", "suppression": "supp", "": ""}
CLASS_WORDS = {"prediction": "prediction", "pred": "prediction", "suppression": "suppression"}
CLASS_WORDS |= {"supp": "suppression", "none": ""}


def _concept(name: str) -> Callable[[LayerNeurons], np.ndarray | None]:
    """A "one token or a concept?" value of the scan (None for results kept without them)."""
    return lambda n: getattr(n.result, name)


def _diff(name: str) -> Callable[[LayerNeurons], np.ndarray | None]:
    """A value of the diff against another checkpoint (None when none is compared)."""
    return lambda n: None if n.diff is None else np.asarray(getattr(n.diff, name), dtype=np.float64)


def _pole(pole: str, name: str) -> Callable[[LayerNeurons], np.ndarray | None]:
    """A corpus-pass value of one pole (None until the layer has a pass)."""
    return lambda n: None if n.evidence is None else getattr(n.evidence.pole(pole), name)


COLUMNS: dict[str, NeuronColumn] = {
    column.name: column
    for column in (
        NeuronColumn(
            "neuron", "neuron", lambda n: np.arange(n.d_mlp), "{:.0f}", descending=False, filterable=False
        ),
        NeuronColumn(
            "max_dot",
            "max-dot",
            lambda n: n.result.max_dot,
            detail_label="max |dot|",
            aliases=("maxdot", "max"),
        ),
        NeuronColumn("null_z", "null-z", lambda n: n.null_z, "{:.1f}", aliases=("z",), unknown_as=0.0),
        NeuronColumn(
            "kurtosis",
            "kurt",
            lambda n: n.result.kurtosis,
            "{:.1f}",
            detail_label="kurtosis",
            detail_format="{:.2f}",
            unknown_as=0.0,
        ),
        NeuronColumn(
            "skew",
            "skew",
            lambda n: n.result.skew,
            "{:+.2f}",
            detail_label="skew",
            detail_format="{:+.3f}",
            unknown_as=0.0,
        ),
        NeuronColumn("class", "class", lambda n: n.classes, kind="class", detail_label="class"),
        NeuronColumn("norm", "norm", lambda n: n.result.norm, detail_label="|W_out[i]|"),
        # One token or a concept? (engine.scan.concepts), over the promote list and the suppress list.
        NeuronColumn(
            "forms", "forms", _concept("promote_forms"), "{:.0f}", descending=False, exported=True, whole=True
        ),
        NeuronColumn("form_share", "fshare", _concept("promote_form_share"), "{:.2f}", exported=True),
        NeuronColumn("coherence", "coh", _concept("promote_coherence"), "{:.2f}", exported=True),
        NeuronColumn(
            "coherence_z",
            "coh-z",
            _concept("promote_coherence_z"),
            "{:.1f}",
            aliases=("cohz",),
            exported=True,
        ),
        NeuronColumn(
            "coherence_dir_z", "coh-dz", _concept("promote_coherence_dir_z"), "{:.1f}", exported=True
        ),
        NeuronColumn(
            "supp_forms",
            "sforms",
            _concept("suppress_forms"),
            "{:.0f}",
            descending=False,
            exported=True,
            whole=True,
        ),
        NeuronColumn("supp_form_share", "sfshare", _concept("suppress_form_share"), "{:.2f}", exported=True),
        NeuronColumn("supp_coherence", "scoh", _concept("suppress_coherence"), "{:.2f}", exported=True),
        NeuronColumn("supp_coherence_z", "scoh-z", _concept("suppress_coherence_z"), "{:.1f}", exported=True),
        NeuronColumn(
            "supp_coherence_dir_z", "scoh-dz", _concept("suppress_coherence_dir_z"), "{:.1f}", exported=True
        ),
        # The corpus pass, per pole: the positive pole's columns keep their plain names.
        NeuronColumn("lift", "lift", _pole("positive", "lift"), "{:.1f}", aliases=("pos_lift",)),
        NeuronColumn("density", "density", _pole("positive", "density"), "{:.3f}"),
        NeuronColumn("input_forms", "in-forms", _pole("positive", "input_forms"), "{:.0f}", descending=False),
        NeuronColumn("input_entropy", "in-bits", _pole("positive", "input_entropy"), "{:.1f}"),
        NeuronColumn("neg_lift", "nlift", _pole("negative", "lift"), "{:.1f}", aliases=("lift_neg",)),
        NeuronColumn("neg_density", "ndensity", _pole("negative", "density"), "{:.3f}"),
        NeuronColumn(
            "neg_input_forms", "nin-forms", _pole("negative", "input_forms"), "{:.0f}", descending=False
        ),
        NeuronColumn("neg_input_entropy", "nin-bits", _pole("negative", "input_entropy"), "{:.1f}"),
        # Which tokens it makes on the corpus: its direct logit attribution toward the predicted
        # token (engine.data.evidence), the share of positions where it tops its layer and its mean
        # attribution where it fires (per pole).
        NeuronColumn(
            "attr_top1",
            "top1",
            lambda n: None if n.evidence is None else n.evidence.attr_top1,
            "{:.3f}",
            detail_label="tops its layer",
            aliases=("attr-top1", "top1_share"),
        ),
        NeuronColumn(
            "attr_mean",
            "attr",
            _pole("positive", "attr_mean"),
            "{:+.3f}",
            detail_label="mean attribution (+)",
            aliases=("pos_attr_mean",),
        ),
        NeuronColumn(
            "neg_attr_mean",
            "nattr",
            _pole("negative", "attr_mean"),
            "{:+.3f}",
            detail_label="mean attribution (−)",
            aliases=("attr_mean_neg",),
        ),
        # Against another checkpoint (neuron-tui --against B): the write's turn and what survived.
        NeuronColumn(
            "diff_cos",
            "cos-B",
            _diff("cosine"),
            "{:.4f}",
            detail_label="cos(W_out, W_out of B)",
            detail_format="{:.6f}",
            aliases=("cosb", "cos_b"),
            descending=False,  # the most changed first
        ),
        NeuronColumn("diff_jaccard", "jacc", _diff("promote_jaccard"), "{:.2f}", descending=False),
        NeuronColumn("diff_supp_jaccard", "sjacc", _diff("suppress_jaccard"), "{:.2f}", descending=False),
        NeuronColumn("diff_max_dot", "Δmax", _diff("max_dot_change"), "{:+.3f}", aliases=("dmax",)),
        NeuronColumn("diff_null_z", "Δz", _diff("null_z_change"), "{:+.1f}", aliases=("dz",)),
        NeuronColumn("diff_top_kept", "kept", _diff("top_kept"), "{:.0f}", descending=False),
    )
}

# The order ``s`` cycles through; every other column filters but does not sort.
SORT_ORDER = (
    "max_dot",
    "neuron",
    "null_z",
    "kurtosis",
    "skew",
    "class",
    "forms",
    "coherence_z",
    "lift",
    "neg_lift",
    "attr_top1",
    "attr_mean",
    "diff_cos",
    "diff_jaccard",
)
FILTERABLE = tuple(name for name, column in COLUMNS.items() if column.filterable)


def exported_columns() -> list[NeuronColumn]:
    """The columns that scan records carry by name, in registry order."""
    return [column for column in COLUMNS.values() if column.exported]


def column_for(word: str) -> NeuronColumn | None:
    """The column a typed word names: its name, its title or an alias (``-`` and ``_`` alike)."""
    word = word.strip().lower().replace("-", "_")
    for column in COLUMNS.values():
        if word in (w.replace("-", "_") for w in column.words):
            return column
    return None
