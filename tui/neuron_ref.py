"""Reading a neuron reference typed by the user: ``L29/N1135``, ``29:1135``, ``29/1135``, or
``1135`` for the layer on screen."""

from __future__ import annotations

import re

_FULL = re.compile(r"^\s*l?\s*(\d+)\s*[/:,\s]\s*n?\s*(\d+)\s*$", re.IGNORECASE)
_NEURON = re.compile(r"^\s*n?\s*(\d+)\s*$", re.IGNORECASE)


class NeuronRefError(ValueError):
    pass


def parse_neuron_ref(text: str, current_layer: int | None, n_layers: int, d_mlp: int) -> tuple[int, int]:
    """``(layer, neuron)``, checked against the model's shape."""
    if match := _FULL.match(text):
        layer, neuron = int(match[1]), int(match[2])
    elif (match := _NEURON.match(text)) and current_layer is not None:
        layer, neuron = current_layer, int(match[1])
    else:
        raise NeuronRefError(f"cannot read {text.strip()!r}: write L29/N1135, 29:1135, 29/1135 or 1135")
    if not 0 <= layer < n_layers:
        raise NeuronRefError(f"layer {layer} is out of range: this model has layers 0-{n_layers - 1}")
    if not 0 <= neuron < d_mlp:
        raise NeuronRefError(f"neuron {neuron} is out of range: each layer has neurons 0-{d_mlp - 1}")
    return layer, neuron


def neuron_label(layer: int, neuron: int) -> str:
    return f"L{layer}/N{neuron}"
