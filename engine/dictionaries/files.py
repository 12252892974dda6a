"""Reading a dictionary's files: JSON configs and tensors, each failure one line naming the file or
the field (a dictionary is user input: its errors say what to fix).

Readers run twice: under ``shapes_only()`` to describe a dictionary when it is opened (every
config field and tensor shape checked from the files' headers, no weights read: a folder of
dictionaries for every layer of a large model opens in milliseconds), and then to load one when
its layer is used. Under ``shapes_only()`` each tensor is a placeholder of its shape that holds no
memory (one zero, every stride 0).
"""

from __future__ import annotations

import contextvars
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine.errors import UserError

_SHAPES_ONLY = contextvars.ContextVar("shapes_only", default=False)


@contextmanager
def shapes_only() -> Iterator[None]:
    """Within it, readers read configs and tensor shapes only (see the module's docstring)."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def placeholder(shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``shape`` that holds one float32 zero (every stride 0): shapes without data."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=shape, strides=(0,) * len(shape))


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` as contiguous float32 (a placeholder stays one)."""
    return array if _SHAPES_ONLY.get() else np.ascontiguousarray(array, dtype=np.float32)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the dictionary config {path}: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"the dictionary config {path} is not a JSON object")
    return data


def field(config: dict, name: str, path: Path, kind: type = int):
    """``config[name]`` of the expected type, or one line naming the field."""
    value = config.get(name)
    if value is None:
        raise UserError(f"the dictionary config {path} has no {name!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(
            f"the dictionary config {path}: {name!r} must be a positive whole number, got {value!r}"
        )
    if kind is not int and not isinstance(value, kind):
        raise UserError(f"the dictionary config {path}: {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float32 numpy (bf16 and fp16 widened exactly)."""
    import torch
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"the dictionary's weights {path} are missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            if _SHAPES_ONLY.get():
                return {
                    name: placeholder(tuple(handle.get_slice(name).get_shape())) for name in handle.keys()
                }
            return {name: handle.get_tensor(name).to(torch.float32).numpy() for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot read the dictionary's weights {path}: {error}") from None


def read_one(path: Path, name: str) -> np.ndarray:
    """One tensor of a safetensors file as float32 (its placeholder under ``shapes_only()``)."""
    import torch
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"the dictionary's weights {path} are missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            if name not in handle.keys():
                raise UserError(f"the dictionary's weights {path} have no tensor {name!r}")
            if _SHAPES_ONLY.get():
                return placeholder(tuple(handle.get_slice(name).get_shape()))
            return handle.get_tensor(name).to(torch.float32).numpy()
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot read the dictionary's weights {path}: {error}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        if _SHAPES_ONLY.get():
            return _npz_shapes(path)
        with np.load(path, allow_pickle=False) as archive:
            return {name: np.asarray(archive[name], dtype=np.float32) for name in archive.files}
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the dictionary's weights {path}: {error}") from None


def tensor(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """``tensors[name]`` of ``shape``, or one line naming the tensor and the shapes."""
    if name not in tensors:
        raise UserError(f"the dictionary's weights {path} have no tensor {name!r}")
    found = tensors[name]
    if found.shape != shape:
        raise UserError(
            f"the dictionary's weights {path}: {name!r} has shape {list(found.shape)}, "
            f"its config says {list(shape)}"
        )
    return contiguous(found)


def _npz_shapes(path: Path) -> dict[str, np.ndarray]:
    """Placeholders of an .npz file's arrays, from each member's .npy header."""
    found = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, _ = read_header(handle)
            found[member.removesuffix(".npy")] = placeholder(tuple(shape))
    return found
