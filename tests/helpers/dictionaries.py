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


def hf_sites(model, tokenizer, documents, context: int, layer: int) -> dict[str, np.ndarray]:
    """Every position's residual stream after block ``layer`` and its MLP's input and output
    [positions, d_model] (float64), each window run alone through the plain Hugging Face model
    with PyTorch forward hooks, windows cut as the activation pass cuts them."""
    import torch

    block = model.model.layers[layer]
    seen: dict[str, torch.Tensor] = {}

    def first(value):
        return value[0] if isinstance(value, tuple) else value

    hooks = [
        block.register_forward_hook(lambda m, i, o: seen.__setitem__("resid_post", first(o))),
        block.mlp.register_forward_hook(lambda m, i, o: seen.update(mlp_in=i[0], mlp_out=first(o))),
    ]
    found: dict[str, list] = {"resid_post": [], "mlp_in": [], "mlp_out": []}
    with torch.no_grad():
        for text in documents:
            ids = tokenizer(text)["input_ids"]
            for start in range(0, len(ids), context):
                model(torch.tensor([ids[start : start + context]]))
                for name in found:
                    found[name].append(seen[name][0].double().numpy())
    for hook in hooks:
        hook.remove()
    return {name: np.concatenate(parts) for name, parts in found.items()}


def explained_variance(target: np.ndarray, reconstruction: np.ndarray) -> float:
    """1 - sum |y - y_hat|^2 / sum |y - mean y|^2, over every position, in float64."""
    error = ((target - reconstruction) ** 2).sum()
    return float(1.0 - error / ((target - target.mean(axis=0)) ** 2).sum())
