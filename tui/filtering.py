"""Sorting and filtering of a layer's neurons, as plain numpy (the list only draws the result)."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np

from engine.neurons import LayerNeurons

SORT_KEYS = ("max-dot", "neuron", "null-z", "kurtosis", "skew", "class", "lift")
FILTER_FIELDS = ("max_dot", "null_z", "kurtosis", "skew", "norm", "class", "lift", "density")
# The words the screen shows are accepted as typed: the list's column titles and class tags.
FIELD_ALIASES = {"kurt": "kurtosis", "maxdot": "max_dot", "max": "max_dot", "z": "null_z"}
CLASS_VALUES = {
    "prediction": "prediction",
    "pred": "prediction",
    "suppression": "suppression",
    "supp": "suppression",
    "none": "",
}
_OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
    "==": operator.eq,
}
_CONDITION = re.compile(r"^\s*([a-z_\-]+)\s*(>=|<=|==|=|>|<)\s*(\S+)\s*$")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: float | str

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def parse_filter(text: str) -> list[Condition]:
    """``0.5`` (max-dot at least 0.5), or conditions such as ``kurtosis>10, class=prediction``."""
    text = text.strip()
    if not text:
        return []
    try:
        return [Condition("max_dot", ">=", float(text))]
    except ValueError:
        pass
    conditions = []
    for part in re.split(r",|\band\b", text):
        if not part.strip():
            continue
        match = _CONDITION.match(part.strip().lower())
        if not match:
            raise FilterError(
                f"cannot read {part.strip()!r}: write e.g. 0.5, max_dot>=0.5, kurtosis>10 or class=prediction"
            )
        field, op, raw = match.groups()
        field = field.replace("-", "_")
        field = FIELD_ALIASES.get(field, field)
        if field not in FILTER_FIELDS:
            raise FilterError(f"unknown field {field!r}: use one of {', '.join(FILTER_FIELDS)}")
        if field == "class":
            if op not in ("=", "=="):
                raise FilterError("class takes = (class=prediction, class=suppression or class=none)")
            if raw not in CLASS_VALUES:
                raise FilterError(
                    f"class is one of prediction (pred), suppression (supp) or none; got {raw!r}"
                )
            conditions.append(Condition(field, "=", CLASS_VALUES[raw]))
            continue
        try:
            conditions.append(Condition(field, op, float(raw)))
        except ValueError:
            raise FilterError(f"{raw!r} is not a number") from None
    return conditions


def neuron_order(neurons: LayerNeurons, sort_key: str, conditions: list[Condition]) -> np.ndarray:
    """Indices of the neurons that pass ``conditions``, in ``sort_key`` order (descending scores)."""
    result = neurons.result
    columns = {
        "max_dot": result.max_dot,
        "kurtosis": np.nan_to_num(result.kurtosis, nan=0.0),
        "skew": np.nan_to_num(result.skew, nan=0.0),
        "norm": result.norm,
        "null_z": neurons.null_z if neurons.null_z is not None else np.zeros(result.d_mlp),
        "class": neurons.classes,
        # Without a corpus pass every lift is unknown (NaN): no condition on it holds.
        "lift": neurons.lift if neurons.lift is not None else np.full(result.d_mlp, np.nan),
        "density": (
            neurons.evidence.density if neurons.evidence is not None else np.full(result.d_mlp, np.nan)
        ),
    }
    keep = np.ones(result.d_mlp, dtype=bool)
    for condition in conditions:
        keep &= np.asarray(_OPERATORS[condition.op](columns[condition.field], condition.value), dtype=bool)
    index = np.flatnonzero(keep)
    if sort_key == "neuron":
        return index
    if sort_key == "class":
        classes = neurons.classes
        rank = np.select([classes == "prediction", classes == "suppression"], [0, 1], 2)
        return index[np.lexsort((-result.max_dot[index], rank[index]))]
    values = columns[{"max-dot": "max_dot", "null-z": "null_z"}.get(sort_key, sort_key)][index]
    values = np.where(np.isnan(values), -np.inf, values)  # unknown (lift without a corpus pass) last
    return index[np.argsort(-values, kind="stable")]
