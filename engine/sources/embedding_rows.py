"""A safetensors embedding read a block of rows at a time, in the dtype its file stores
(``EmbeddingRows``): ``FileRows`` reads the rows asked for straight from the file and widens them
to float32, so the process never holds more of it than one block (an 8B model's bf16 W_E is
1 GiB; in float32, 2 GiB)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

# safetensors dtypes that widen exactly to float32, as numpy reads their bytes
_STORED = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}


def _tensor_location(path: Path, name: str) -> tuple[str, tuple[int, ...], int] | None:
    """(dtype, shape, byte offset in the file) of tensor ``name`` from the safetensors header."""
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    entry = header.get(name)
    if not isinstance(entry, dict):
        return None
    begin, _end = entry["data_offsets"]
    return entry["dtype"], tuple(int(n) for n in entry["shape"]), 8 + size + int(begin)


class FileRows:
    """A 2-D safetensors tensor read from its file a few rows at a time, with plain reads (no
    memory map: mapped pages, and the neighbours the kernel maps around each one, would count as
    this process's memory until let go). bf16 widens to float32 by moving its bits up (exact),
    fp16 by numpy's conversion (exact)."""

    def __init__(self, path: Path, name: str) -> None:
        found = _tensor_location(path, name)
        if found is None or found[0] not in _STORED or len(found[1]) != 2:
            raise ValueError(f"{name} in {path} is not a 2-D bf16, fp16 or float32 tensor")
        self._kind, (self._rows, self._cols), self._offset = found
        self._path = path
        self._dtype = np.dtype(_STORED[self._kind])
        self._row_bytes = self._cols * self._dtype.itemsize

    @property
    def shape(self) -> tuple[int, int]:
        return self._rows, self._cols

    def _float32(self, stored: np.ndarray) -> np.ndarray:
        if self._kind == "BF16":  # a bf16 is the top half of the float32 of the same value
            wide = stored.astype(np.uint32)
            wide <<= 16
            return wide.view(np.float32)
        return stored.astype(np.float32)

    def rows(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self._rows)
        stored = np.empty((max(stop - start, 0), self._cols), dtype=self._dtype)
        with self._path.open("rb", buffering=0) as handle:
            _read_into(handle.fileno(), stored, self._offset + start * self._row_bytes)
        return self._float32(stored)

    def take(self, ids: np.ndarray) -> np.ndarray:
        stored = np.empty((len(ids), self._cols), dtype=self._dtype)
        with self._path.open("rb", buffering=0) as handle:
            for index, row in enumerate(ids.tolist()):
                _read_into(handle.fileno(), stored[index], self._offset + row * self._row_bytes)
        return self._float32(stored)


def _read_into(fd: int, out: np.ndarray, offset: int) -> None:
    """Fill ``out`` (contiguous) with the file's bytes from ``offset``."""
    view = out.data.cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError(f"the file ends inside a tensor at byte {offset + done}")
        done += got
