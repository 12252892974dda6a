"""Direct logit attribution and ablation by hand, in float64: the plain transformers model loaded
afresh from the checkpoint (never the one the bridge wraps), read with PyTorch hooks, every
quantity from its definition in engine.data.attribution. The final residual is split into its
parts (the embeddings, each attention output, each MLP's neurons and bias), so a test can check
that they add up to the logit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Reference:
    logits: np.ndarray  # [positions, vocab]
    targets: np.ndarray  # [positions]
    scale: np.ndarray  # [positions]: the final norm's scale
    dla: dict[int, np.ndarray]  # per layer [positions, d_mlp]
    activations: dict[int, np.ndarray]  # per layer [positions, d_mlp]
    others: np.ndarray  # [positions]: every other part's direct push (embeddings, attention, biases)
    constant: np.ndarray  # [positions]: the final norm's bias and the unembedding's, on the target


def float64_model(folder: Path):
    """The checkpoint in ``folder`` as transformers builds it, in float64."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()


def _parts(model):
    """(decoder layers, final norm, its eps, centred, norm weight as applied, each layer's
    (attention, MLP output projection, W_out [d_mlp, d_model], its bias))."""
    if hasattr(model, "transformer"):  # GPT-2: Conv1D c_proj stored [d_mlp, d_model], LayerNorm
        layers, norm = model.transformer.h, model.transformer.ln_f
        blocks = [(b.attn, b.mlp.c_proj, b.mlp.c_proj.weight, b.mlp.c_proj.bias) for b in layers]
        return layers, norm, norm.eps, True, norm.weight, blocks
    layers, norm = model.model.layers, model.model.norm
    blocks = [(b.self_attn, b.mlp.down_proj, b.mlp.down_proj.weight.T, b.mlp.down_proj.bias) for b in layers]
    gemma = type(norm).__name__.startswith("Gemma")
    weight = 1 + norm.weight if gemma else norm.weight
    eps = getattr(norm, "variance_epsilon", None) or norm.eps
    return layers, norm, eps, False, weight, blocks


def reference_attribution(model, ids: list[int], target: int | None = None) -> Reference:
    """Everything in float64 from the model's own run on ``ids``."""
    layers, norm, eps, centred, weight, blocks = _parts(model)
    weight = weight.detach()
    seen: dict = {}
    hooks = [
        layers[0].register_forward_pre_hook(
            lambda m, a, k: seen.__setitem__("embed", (a[0] if a else k["hidden_states"])[0]),
            with_kwargs=True,
        ),
        norm.register_forward_hook(lambda m, i, o: seen.__setitem__("resid", i[0][0])),
    ]
    for layer, (attn, out, _, _) in enumerate(blocks):
        hooks.append(
            attn.register_forward_hook(lambda m, i, o, layer=layer: seen.__setitem__(f"attn{layer}", o[0][0]))
        )
        hooks.append(
            out.register_forward_hook(lambda m, i, o, layer=layer: seen.__setitem__(f"act{layer}", i[0][0]))
        )
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    for hook in hooks:
        hook.remove()
    x = seen["resid"]
    centre = x.mean(-1, keepdim=True) if centred else 0.0
    scale = ((x - centre).pow(2).mean(-1) + eps).sqrt()
    targets = logits.argmax(-1) if target is None else torch.full((len(ids),), target)
    unembed = model.lm_head.weight.T.detach()  # [d_model, vocab]
    columns = unembed[:, targets]  # [d_model, positions]

    def push(part: torch.Tensor) -> torch.Tensor:
        """A residual part's direct push on each position's target: [positions]."""
        if centred:
            part = part - part.mean(-1, keepdim=True)
        return (part * weight).mul(columns.T).sum(-1) / scale

    dla, activations = {}, {}
    others = push(seen["embed"])
    parts = seen["embed"].clone()
    for layer, (_, _, w_out, bias) in enumerate(blocks):
        w_out, bias = w_out.detach(), None if bias is None else bias.detach()
        act = seen[f"act{layer}"]
        rows = w_out - w_out.mean(-1, keepdim=True) if centred else w_out
        per_neuron = (rows * weight) @ columns  # [d_mlp, positions]
        dla[layer] = (act * per_neuron.T / scale[:, None]).numpy()
        activations[layer] = act.numpy()
        others = others + push(seen[f"attn{layer}"])
        parts = parts + seen[f"attn{layer}"] + act @ w_out
        if bias is not None:
            others = others + push(bias.expand_as(x))
            parts = parts + bias
    np.testing.assert_allclose(parts.numpy(), x.numpy(), rtol=1e-9, atol=1e-9)  # the split is whole
    constant = torch.zeros(len(ids), dtype=torch.float64)
    if centred:
        constant = constant + norm.bias.detach() @ columns
    if model.lm_head.bias is not None:
        constant = constant + model.lm_head.bias.detach()[targets]
    return Reference(
        logits=logits.numpy(),
        targets=targets.numpy(),
        scale=scale.numpy(),
        dla=dla,
        activations=activations,
        others=others.numpy(),
        constant=constant.numpy(),
    )


def reference_ablation(model, ids: list[int], layer: int, neuron: int, position: int, target: int) -> float:
    """The target's logit at ``position`` with the neuron zeroed there alone, minus its logit as it is."""
    _, _, _, _, _, blocks = _parts(model)
    out = blocks[layer][1]

    def zero(module, args):
        values = args[0].clone()
        values[0, position, neuron] = 0
        return (values,)

    with torch.no_grad():
        clean = model(torch.tensor([ids])).logits[0, position, target]
        handle = out.register_forward_pre_hook(zero)
        try:
            ablated = model(torch.tensor([ids])).logits[0, position, target]
        finally:
            handle.remove()
    return float(ablated - clean)
