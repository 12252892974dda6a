"""Reading and writing a neuron reference: ``L29/N1135``, ``29:1135``, ``29/1135``, or ``1135`` for
the layer on screen; in a layer of experts ``L12/E5/N301``, ``12/E5/301``, ``E5/N301`` (``S`` or
``shared`` for the shared expert). A dictionary's feature is ``L29/F812``, ``29/F812`` or ``F812``
(engine.data.dictionary); written in full it names its dictionary: ``L29/F812 (layers.29)``.

Inside the explorer a neuron is its layer's flat index (engine.data.experts); only what the user
reads and types names the expert. An explorer shows one model (a second one, compared, has the
same shapes), so the layout is set once, when the model is known, by ``use_model``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.data.dictionary import DictionaryInfo, check_feature, feature_ref
from engine.data.experts import SHARED, ExpertLabel, LayerExperts, unit_ref
from engine.errors import UserError

_FULL = re.compile(r"^\s*l?\s*(\d+)\s*[/:,\s]\s*n?\s*(\d+)\s*$", re.IGNORECASE)
_NEURON = re.compile(r"^\s*n?\s*(\d+)\s*$", re.IGNORECASE)
_FEATURE = re.compile(r"^\s*(?:l?\s*(\d+)\s*[/:,\s]\s*)?f\s*(\d+)\s*$", re.IGNORECASE)
_EXPLICIT_NEURON = re.compile(r"(^|[/:,\s])\s*n\s*\d+\s*$", re.IGNORECASE)
_EXPERT = re.compile(
    r"^\s*(?:l?\s*(\d+)\s*[/:,\s]\s*)?(?:e\s*(\d+)|(s|shared))\s*[/:,\s]\s*n?\s*(\d+)\s*$", re.IGNORECASE
)

_NEURON_WORD = re.compile(r"\bneurons?\b")

_layer_experts: Sequence[LayerExperts | None] | None = None


class NeuronRefError(ValueError):
    pass


def use_model(layer_experts: Sequence[LayerExperts | None] | None) -> None:
    """The shown model's experts per layer (None for a dense model): how neurons are named."""
    global _layer_experts
    _layer_experts = layer_experts


def routes_through_experts(layer: int | None = None) -> bool:
    """Whether ``layer`` (by default: any layer of the shown model) is a layer of experts."""
    if _layer_experts is None:
        return False
    return any(e is not None for e in _layer_experts) if layer is None else _experts(layer) is not None


def experts_label(layer: int) -> str:
    """A layer's experts in a few cells (5E+S: five routed experts and a shared one); "" if dense."""
    experts = _experts(layer)
    if experts is None:
        return ""
    return f"{experts.n_routed}E" + ("+S" if experts.n_routed < len(experts.groups) else "")


def _experts(layer: int) -> LayerExperts | None:
    if _layer_experts is None or not 0 <= layer < len(_layer_experts):
        return None
    return _layer_experts[layer]


def parse_neuron_ref(
    text: str,
    current_layer: int | None,
    n_layers: int,
    d_mlp: int,
    current_expert: ExpertLabel | None = None,
) -> tuple[int, int]:
    """``(layer, neuron)``, checked against the model's shape (``d_mlp``: a dense layer's width;
    a layer of experts is checked against its experts). A bare number is a neuron of the layer on
    screen, of ``current_expert`` there when one is listed."""
    bare = _NEURON.match(text)
    if bare and current_layer is not None and current_expert is not None and _experts(current_layer):
        label = "S" if current_expert == SHARED else f"E{current_expert}"
        return parse_neuron_ref(f"L{current_layer}/{label}/N{bare[1]}", None, n_layers, d_mlp)
    if match := _EXPERT.match(text):
        return _expert_ref(match, text, current_layer, n_layers)
    if match := _FULL.match(text):
        layer, neuron = int(match[1]), int(match[2])
    elif (match := _NEURON.match(text)) and current_layer is not None:
        layer, neuron = current_layer, int(match[1])
    else:
        raise NeuronRefError(f"cannot read {text.strip()!r}: write L29/N1135, 29:1135, 29/1135 or 1135")
    _check_layer(layer, n_layers)
    experts = _experts(layer)
    if experts is not None:
        raise NeuronRefError(f"layer {layer} routes through experts: name one, as in L{layer}/E0/N{neuron}")
    if not 0 <= neuron < d_mlp:
        raise NeuronRefError(f"neuron {neuron} is out of range: each layer has neurons 0-{d_mlp - 1}")
    return layer, neuron


def parse_unit_ref(
    text: str,
    current_layer: int | None,
    n_layers: int,
    d_mlp: int,
    dictionaries: dict[int, DictionaryInfo],
    showing_features: bool,
    current_expert: ExpertLabel | None = None,
) -> tuple[int, int, bool]:
    """``(layer, unit, is_feature)``. ``dictionaries``: the open dictionary per layer (empty
    without one); ``showing_features``: the list shows their features. An ``F`` names a feature
    and an ``N`` a neuron whichever kind is shown; a reference without either, a unit of the kind
    shown."""
    feature = _FEATURE.match(text)
    explicit_neuron = _EXPLICIT_NEURON.search(text) or _EXPERT.match(text)
    if feature is None and (not showing_features or explicit_neuron):
        layer, neuron = parse_neuron_ref(text, current_layer, n_layers, d_mlp, current_expert)
        return layer, neuron, False
    if feature is not None:
        layer_text, number = feature[1], feature[2]
    elif (full := _FULL.match(text)) is not None:
        layer_text, number = full[1], full[2]
    elif (bare := _NEURON.match(text)) is not None:
        layer_text, number = None, bare[1]
    else:
        raise NeuronRefError(f"cannot read {text.strip()!r}: write L29/F812, 29/F812 or F812")
    if layer_text is None and current_layer is None:
        raise NeuronRefError(f"cannot read {text.strip()!r}: name the layer too, as in L29/F{number}")
    layer = int(layer_text) if layer_text is not None else int(current_layer)  # type: ignore[arg-type]
    return layer, _feature(layer, int(number), n_layers, dictionaries), True


def _feature(layer: int, feature: int, n_layers: int, dictionaries: dict[int, DictionaryInfo]) -> int:
    """``feature``, checked against the dictionary that reads ``layer``."""
    if not dictionaries:
        raise NeuronRefError(
            f"F{feature} names a dictionary's feature: start the explorer with --dictionary PATH"
        )
    _check_layer(layer, n_layers)
    info = dictionaries.get(layer)
    if info is None:
        have = ", ".join(map(str, sorted(dictionaries)))
        raise NeuronRefError(f"layer {layer} has no dictionary: the dictionaries read layers {have}")
    try:
        check_feature(feature, info)
    except UserError as error:
        raise NeuronRefError(str(error)) from None
    return feature


def _expert_ref(match: re.Match, text: str, current_layer: int | None, n_layers: int) -> tuple[int, int]:
    if match[1] is None and current_layer is None:
        raise NeuronRefError(f"cannot read {text.strip()!r}: name the layer too, as in L12/E5/N301")
    layer = int(match[1]) if match[1] is not None else int(current_layer)  # type: ignore[arg-type]
    _check_layer(layer, n_layers)
    experts = _experts(layer)
    if experts is None:
        raise NeuronRefError(f"layer {layer} has no experts: write L{layer}/N{match[4]}")
    expert = SHARED if match[3] else int(match[2])
    try:
        return layer, experts.flat(expert, int(match[4]))
    except Exception as error:  # a UserError from the layout: its one line says what is wrong
        raise NeuronRefError(str(error)) from None


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise NeuronRefError(f"layer {layer} is out of range: this model has layers 0-{n_layers - 1}")


def neuron_label(layer: int, neuron: int) -> str:
    """L29/N1135, or L12/E5/N301 in a layer of experts."""
    return unit_ref(layer, neuron, _experts(layer))


@dataclass(frozen=True)
class UnitNames:
    """How the views name the units the explorer lists: the model's neurons, or (``dictionaries``:
    each layer's dictionary name) a dictionary's features. A view is opened for one kind and keeps
    its names; the explorer switches kinds on its main screen only."""

    dictionaries: Mapping[int, str] | None = field(default=None)

    @property
    def features(self) -> bool:
        return self.dictionaries is not None

    @property
    def word(self) -> str:
        """A unit's kind: "neuron" or "feature"."""
        return "feature" if self.features else "neuron"

    @property
    def weights(self) -> str:
        """The matrix whose rows are the units' write directions: W_out, or a dictionary's W_dec."""
        return "W_dec" if self.features else "W_out"

    def said(self, words: str) -> str:
        """``words`` about neurons (a line the engine writes for either kind) said of the units
        named: "the neuron's scale" becomes "the feature's scale" for a dictionary's features."""
        if not self.features:
            return words
        return _NEURON_WORD.sub(lambda found: found[0].replace("neuron", "feature"), words)

    def full(self, layer: int, unit: int) -> str:
        """L29/N1135 (L12/E5/N301 among experts), or L29/F812 (layers.29)."""
        if self.dictionaries is None:
            return neuron_label(layer, unit)
        return feature_ref(layer, unit, self.dictionaries.get(layer))

    def ref(self, layer: int, unit: int) -> str:
        """What go-to takes: L29/N1135 (L12/E5/N301 among experts), or L29/F812."""
        return neuron_label(layer, unit) if self.dictionaries is None else feature_ref(layer, unit)

    def compact(self, layer: int, unit: int) -> str:
        """Where tables are narrow: L29:1135 (L12/E5/N301 among experts), or L29/F812."""
        return compact_label(layer, unit) if self.dictionaries is None else feature_ref(layer, unit)

    def in_layer(self, layer: int, unit: int) -> str:
        """Beside its layer (in a column of its own): 1135 (E5/301 among experts), or F812."""
        return in_layer_label(layer, unit) if self.dictionaries is None else f"F{unit}"


NEURON_NAMES = UnitNames()


def compact_label(layer: int, neuron: int) -> str:
    """L29:1135 where tables are narrow, or L12/E5/N301 in a layer of experts."""
    return neuron_label(layer, neuron) if _experts(layer) is not None else f"L{layer}:{neuron}"


def in_layer_label(layer: int, neuron: int) -> str:
    """A table's neuron column beside its layer column: 1135, or E5/301 in a layer of experts."""
    return short_label(neuron, _experts(layer))


def short_label(neuron: int, experts: LayerExperts | None) -> str:
    """The neuron within its layer, as the list shows it: 1135, or E5/301 in a layer of experts."""
    if experts is None:
        return str(neuron)
    expert, local = experts.locate(neuron)
    return f"{'S' if expert == SHARED else f'E{expert}'}/{local}"
