"""Dictionaries written by their own libraries, for tests: EleutherAI sparsify here, in the test
process; SAELens and circuit-tracer in a reference environment of their own (see
``reference_dictionaries``), since they cannot be imported beside TransformerLens 4."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_sparsify(
    folder: Path,
    hookpoint: str,
    d_in: int,
    num_latents: int = 48,
    k: int = 6,
    transcode: bool = False,
    activation: str = "topk",
    skip: bool = False,
    seed: int = 0,
) -> Path:
    """A sparsify checkpoint (``cfg.json`` + ``sae.safetensors`` in ``folder/hookpoint``) written by
    ``SparseCoder.save_to_disk``, every parameter random (the library starts its biases at zero)."""
    import torch
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(seed)
    config = SparseCoderConfig(
        num_latents=num_latents, k=k, transcode=transcode, activation=activation, skip_connection=skip
    )
    coder = SparseCoder(d_in, config)
    with torch.no_grad():
        for parameter in coder.parameters():
            parameter.normal_(0.0, 0.3)
        coder.encoder.bias.normal_(0.0, 0.5)
    coder.save_to_disk(folder / hookpoint)
    return folder / hookpoint


def load_sparsify(folder: Path):
    """The library's own reading of a checkpoint, in float64 (its ``encode`` is the reference)."""
    import torch
    from sparsify import SparseCoder

    return SparseCoder.load_from_disk(folder).to(torch.float64)


def sparsify_acts(coder, x: np.ndarray) -> np.ndarray:
    """The library's feature activations [n, num_latents] (it returns the top k as values and indices)."""
    import torch

    with torch.no_grad():
        out = coder.encode(torch.from_numpy(x).double())
        dense = torch.zeros(x.shape[0], coder.num_latents, dtype=torch.float64)
        dense.scatter_(1, out.top_indices, out.top_acts)
    return dense.numpy()
