"""Choosing the torch device and dtype from command-line words."""

from __future__ import annotations

import re

from engine.errors import UserError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device_name(name: str) -> str:
    """Validate a ``--device`` value without importing torch."""
    if not _DEVICE_PATTERN.match(name):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return name


def resolve_device(name: str):
    """The torch.device for ``name``; ``auto`` picks CUDA when it is available."""
    import torch

    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cpu":
            return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name} was asked for but CUDA is not available here: use cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        # The scan's error bound assumes true float32 products: TF32 would void it.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(name)


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
