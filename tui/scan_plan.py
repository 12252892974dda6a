"""The order in which the explorer's background scanner computes things, as pure functions.

The layer on screen comes first, then the null baseline (it gives every layer its standout counts),
then the remaining layers nearest to the one on screen first; ties go to the lower layer.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

NULL_BASELINE: Literal["null"] = "null"
ScanTarget = int | Literal["null"] | None  # a layer, the null baseline, or None when all is done


def next_scan_target(
    n_layers: int,
    wanted: int | None,
    done: Collection[int],
    null_ready: bool,
    layers: Collection[int] | None = None,
) -> ScanTarget:
    """What to compute next, given the layer on screen (``wanted``) and what is already done;
    ``layers``: only these (a dictionary's), not every layer."""
    pending = [
        layer for layer in range(n_layers) if layer not in done and (layers is None or layer in layers)
    ]
    if not pending:
        return None
    if wanted is not None and wanted not in done:
        return wanted
    if not null_ready and wanted is not None:
        return NULL_BASELINE
    anchor = wanted if wanted is not None else 0
    return min(pending, key=lambda candidate: (abs(candidate - anchor), candidate))


def should_abandon(target: int, wanted: int | None, done: Collection[int]) -> bool:
    """Leave a background layer as soon as the user wants another layer that is not done yet."""
    return wanted is not None and wanted != target and wanted not in done
