"""Reading and writing a neuron reference: ``L29/N1135``, ``29:1135``, ``29/1135``, or ``1135`` for
the layer on screen; in a layer of experts ``L12/E5/N301``, ``12/E5/301``, ``E5/N301`` (``S`` or
``shared`` for the shared expert).

Inside the explorer a neuron is its layer's flat index (engine.data.experts); only what the user
reads and types names the expert. An explorer shows one model (a second one, compared, has the
same shapes), so the layout is set once, when the model is known, by ``use_model``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.data.experts import SHARED, ExpertLabel, LayerExperts, unit_ref

_FULL = re.compile(r"^\s*l?\s*(\d+)\s*[/:,\s]\s*n?\s*(\d+)\s*$", re.IGNORECASE)
_NEURON = re.compile(r"^\s*n?\s*(\d+)\s*$", re.IGNORECASE)
_EXPERT = re.compile(
    r"^\s*(?:l?\s*(\d+)\s*[/:,\s]\s*)?(?:e\s*(\d+)|(s|shared))\s*[/:,\s]\s*n?\s*(\d+)\s*$", re.IGNORECASE
)

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
