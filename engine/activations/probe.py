"""One typed text through the model: per token, the neurons that fire hardest.

The same hooks as the corpus pass (``blocks.{l}.mlp.hook_post``), on one sequence; the forward
pass stops at the final norm. Returns plain arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PromptFiring:
    token_ids: np.ndarray  # [positions] int64, as tokenizer(text) gives them
    layers: list[int]
    neurons: np.ndarray  # [positions, len(layers), top] int64: hardest-firing neurons, best first
    activations: np.ndarray  # [positions, len(layers), top] float32


class _Stop(Exception):
    pass


def probe_text(
    bridge, tokenizer, text: str, layers: list[int], top: int, device: torch.device
) -> PromptFiring:
    ids = tokenizer(text)["input_ids"]
    if not ids:
        return PromptFiring(
            np.zeros(0, np.int64),
            layers,
            np.zeros((0, len(layers), top), np.int64),
            np.zeros((0, len(layers), top), np.float32),
        )
    found: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def read(layer: int):
        def hook(activations: torch.Tensor, hook=None):
            # Ties: the lower neuron first (a stable sort, descending).
            values, order = torch.sort(activations[0].float(), dim=1, descending=True, stable=True)
            found[layer] = (order[:, :top], values[:, :top])
            return activations

        return hook

    def stop(_tensor, hook=None):
        raise _Stop()

    hooks = [(f"blocks.{layer}.mlp.hook_post", read(layer)) for layer in layers]
    hooks.append(("ln_final.hook_in", stop))
    with torch.inference_mode():
        try:
            bridge.run_with_hooks(torch.tensor([ids], device=device), fwd_hooks=hooks)
        except _Stop:
            pass
    neurons = np.stack([found[layer][0].cpu().numpy() for layer in layers], axis=1)
    values = np.stack([found[layer][1].cpu().numpy() for layer in layers], axis=1)
    return PromptFiring(np.asarray(ids, dtype=np.int64), layers, neurons, values.astype(np.float32))
