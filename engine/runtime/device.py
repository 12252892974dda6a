"""Choosing the torch device and dtype from command-line words."""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import UserError
from engine.settings import Dtype

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device_name(name: str) -> str:
    """Validate a ``--device`` value without importing torch."""
    if not _DEVICE_PATTERN.match(name):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return name


def resolve_device(name: str):
    """The torch.device for ``name``; ``auto`` picks CUDA when it is available."""
    import torch

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


def nvidia_gpu_present() -> bool:
    """An NVIDIA GPU with its kernel driver loaded, seen without importing torch."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def cpu_only_torch_warning() -> str | None:
    """A warning when this machine has a CUDA GPU that the installed torch cannot use."""
    import torch

    if torch.version.cuda is not None or not nvidia_gpu_present():
        return None
    return (
        f"warning: this machine has an NVIDIA GPU but torch {torch.__version__} is a CPU-only build, so "
        "everything runs on the CPU; install a CUDA build with 'make run TORCH_SPEC=torch' "
        "(or 'pip install --force-reinstall torch')"
    )


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def default_precision(device_name: str) -> Dtype:
    """The product precision ``--dtype auto`` means: bf16 where the scan runs on CUDA (tensor cores
    multiply bf16 an order of magnitude faster, and the results are still exact), float32 on a CPU
    (where torch's bf16 products round to bf16, and the exact path emulates them at float32 speed).
    Decided without importing torch unless this machine has an NVIDIA GPU."""
    if device_name == "cpu":
        return "float32"
    if device_name.startswith("cuda"):
        return "bfloat16"
    if not nvidia_gpu_present():
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"
