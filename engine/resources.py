"""Recognising and recovering from running out of device memory."""

from __future__ import annotations


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's equivalent."""
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_device_memory(device) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.empty_cache()


def too_big_message(device, unembed_bytes: int) -> str:
    import torch

    free = ""
    if getattr(device, "type", "cpu") == "cuda":
        available, _total = torch.cuda.mem_get_info(device)
        free = f", {available / 2**30:.1f} GiB free"
    return (
        f"the model is too big for {device}: "
        f"its unembedding alone needs {unembed_bytes / 2**30:.1f} GiB{free}; "
        "use --device cpu or --dtype bfloat16"
    )
