"""A bounded min-heap held in arrays, for the numba kernels (the scan's sweeps, the input side's
candidates, the activation pass's bars): it keeps the ``len(values)`` largest values offered, and
their ids when an ids array is given (None: values alone; numba compiles the id moves away)."""

from __future__ import annotations

try:  # numba is a dependency; a broken install leaves the kernels to their eager fallbacks
    import numba
except ImportError:  # pragma: no cover
    numba = None  # type: ignore[assignment]


def _swap(values, ids, a, b):
    values[a], values[b] = values[b], values[a]
    if ids is not None:
        ids[a], ids[b] = ids[b], ids[a]


def push(values, ids, size, value, identity):
    """Offer ``value`` (with ``identity``) to the heap of ``size`` entries; returns the new size.
    A value equal to the smallest kept one does not enter."""
    keep = values.shape[0]
    if size < keep:
        at = size
        values[at] = value
        if ids is not None:
            ids[at] = identity
        while at > 0:  # sift up
            parent = (at - 1) // 2
            if values[parent] <= values[at]:
                break
            _swap(values, ids, parent, at)
            at = parent
        return size + 1
    if value <= values[0]:
        return size
    values[0] = value
    if ids is not None:
        ids[0] = identity
    at = 0
    while True:  # sift down
        child = 2 * at + 1
        if child >= keep:
            break
        if child + 1 < keep and values[child + 1] < values[child]:
            child += 1
        if values[at] <= values[child]:
            break
        _swap(values, ids, at, child)
        at = child
    return size


if numba is not None:  # called from compiled kernels: compiled itself, inlined into each
    _swap = numba.njit(cache=True, nogil=True, inline="always")(_swap)
    push = numba.njit(cache=True, nogil=True, inline="always")(push)
