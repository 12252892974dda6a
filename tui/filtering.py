"""Sorting and filtering of a layer's neurons, as plain numpy (the list only draws the result)."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

import numpy as np

from engine.columns import CLASS_WORDS, COLUMNS, FILTERABLE, SORT_ORDER, column_for
from engine.data.neurons import LayerNeurons

SORT_KEYS = SORT_ORDER
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
        word, op, raw = match.groups()
        column = column_for(word)
        if column is None or column.name not in FILTERABLE:
            names = ", ".join(FILTERABLE)
            raise FilterError(f"unknown field {word.replace('-', '_')!r}: use one of {names}")
        if column.kind == "class":
            if op not in ("=", "=="):
                raise FilterError("class takes = (class=prediction, class=suppression or class=none)")
            if raw not in CLASS_WORDS:
                raise FilterError(
                    f"class is one of prediction (pred), suppression (supp) or none; got {raw!r}"
                )
            conditions.append(Condition(column.name, "=", CLASS_WORDS[raw]))
            continue
        try:
            number = float(raw)
        except ValueError:
            raise FilterError(f"{raw!r} is not a number") from None
        if not math.isfinite(number):
            raise FilterError(f"{raw!r} is not a finite number: compare with a number such as 3 or 0.5")
        conditions.append(Condition(column.name, op, number))
    return conditions


def neuron_order(neurons: LayerNeurons, sort_key: str, conditions: list[Condition]) -> np.ndarray:
    """Indices of the neurons that pass ``conditions``, in ``sort_key``'s natural order (largest
    first; neurons by id; classes prediction, suppression, then none, each by max-dot)."""
    keep = np.ones(neurons.d_mlp, dtype=bool)
    for condition in conditions:
        values = COLUMNS[condition.field].read(neurons)  # unknown values (NaN) pass no condition
        keep &= np.asarray(_OPERATORS[condition.op](values, condition.value), dtype=bool)
    index = np.flatnonzero(keep)
    column = COLUMNS[sort_key]
    if column.kind == "class":
        classes = neurons.classes
        rank = np.select([classes == "prediction", classes == "suppression"], [0, 1], 2)
        return index[np.lexsort((-neurons.result.max_dot[index], rank[index]))]
    values = column.read(neurons)[index]
    if not column.descending:
        return index[np.argsort(values, kind="stable")]
    values = np.where(np.isnan(values), -np.inf, values)  # unknown (lift without a corpus pass) last
    return index[np.argsort(-values, kind="stable")]
