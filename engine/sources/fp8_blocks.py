"""FP8 weights with block scales, as DeepSeek-V3 and transformers' fine-grained FP8 store them.

A weight stored in float8 (e4m3 or e5m2) comes with ``weight_scale_inv`` beside it: one float32
factor per block of ``weight_block_size`` (config.json's ``quantization_config``; 128 x 128 in
DeepSeek-V3), by which the block's values are multiplied to give the weight. One tensor (one
expert) is dequantised at a time, into float32 as the model computes it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

FP8_DTYPES = ("F8_E4M3", "F8_E5M2")


def scale_name(stored: str) -> str:
    """The name of the scales of weight ``stored`` (``x.weight`` -> ``x.weight_scale_inv``)."""
    return (
        stored.rsplit(".", 1)[0] + ".weight_scale_inv"
        if stored.endswith(".weight")
        else stored + "_scale_inv"
    )


def block_size(config: dict) -> tuple[int, int] | None:
    """config.json's ``quantization_config.weight_block_size``, or None where it names none."""
    found = (config.get("quantization_config") or {}).get("weight_block_size")
    if (
        isinstance(found, (list, tuple))
        and len(found) == 2
        and all(isinstance(n, int) and n > 0 for n in found)
    ):
        return int(found[0]), int(found[1])
    return None


def dequantise(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] | None) -> np.ndarray:
    """``weight`` [..., rows, cols] in float8 times its block scales, as float32."""
    values = weight.to(torch.float32)
    scales = scale_inv.to(torch.float32)
    rows, cols = values.shape[-2:]
    if scales.numel() == 1:
        return (values * scales.reshape(())).numpy()
    if block is None:  # the blocks the scales' shape implies
        block = (math.ceil(rows / scales.shape[-2]), math.ceil(cols / scales.shape[-1]))
    full = scales.repeat_interleave(block[0], dim=-2)[..., :rows, :]
    full = full.repeat_interleave(block[1], dim=-1)[..., :cols]
    return np.ascontiguousarray((values * full).numpy())
