"""Reading a dictionary's files: JSON configs and tensors, each failure one line naming the file or
the field (a dictionary is user input: its errors say what to fix)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.errors import UserError


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
            return {name: handle.get_tensor(name).to(torch.float32).numpy() for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot read the dictionary's weights {path}: {error}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
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
    return np.ascontiguousarray(found, dtype=np.float32)
