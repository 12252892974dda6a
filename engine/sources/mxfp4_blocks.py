"""gpt-oss's MXFP4 experts: ``experts.down_proj_blocks`` (two 4-bit values per byte, 32 per block)
beside ``experts.down_proj_scales`` (one power-of-two exponent per block), as gpt-oss's released
files store them. One expert is dequantised at a time with transformers' own MXFP4 dequantiser, to
the layout of the bf16 tensors (down_proj [d_expert, d_model], gate_up_proj [d_model, 2 d_expert])."""

from __future__ import annotations

import numpy as np
import torch

BLOCK_VALUES = 32  # values per scale: 16 bytes of two 4-bit values


def scales_name(blocks: str) -> str | None:
    return blocks.removesuffix("_blocks") + "_scales" if blocks.endswith("_blocks") else None


def dequantised_shape(blocks_shape: tuple[int, ...]) -> tuple[int, ...]:
    """[experts, out, groups, 16] stored -> [experts, in, out] dequantised (in = groups x 32)."""
    experts, out, groups, _ = blocks_shape
    return experts, groups * BLOCK_VALUES, out


def dequantise_expert(blocks: torch.Tensor, scales: torch.Tensor) -> np.ndarray:
    """One expert's [1, out, groups, 16] blocks and [1, out, groups] scales as float32 [in, out]."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    return np.ascontiguousarray(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)[0].numpy())
