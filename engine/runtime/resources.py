"""Recognising and recovering from running out of device memory."""

from __future__ import annotations

from collections.abc import Callable


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


def return_freed_memory() -> None:
    """Give memory freed by the last layer back to the operating system.

    glibc raises its mmap threshold to the size of each large block freed, so after the first layer
    the layer-sized arrays come from the heap, and the heap (one arena per thread, the read-ahead
    thread's included) keeps their pages when they are freed: peak memory then creeps up layer after
    layer. ``malloc_trim`` hands the free pages back. Elsewhere than glibc this does nothing.
    """
    global _malloc_trim  # a ctypes function, or False where there is none
    if _malloc_trim is None:
        import ctypes
        import ctypes.util

        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if callable(_malloc_trim):
        _malloc_trim(0)


_malloc_trim: Callable[[int], int] | bool | None = None  # glibc's, False where there is none
