"""One pass of a model over a tokenized corpus, reading every chosen layer's MLP activations with
TransformerLens hooks (``blocks.{l}.mlp.hook_post``: the input of the MLP's output projection) and
the final norm's scale (``ln_final.hook_scale``) at every position. For a gated MLP the gate's
pre-activation (``hook_pre``) and the up projection (``hook_pre_linear``) are read too: they run
before the activation, so they are held until its hook fires.

The per-neuron state is updated inside the hooks, so only one batch's activations of one layer
exist at a time; the forward pass stops at the final norm (the unembedding is never computed), or
right after the deepest chosen layer when the final norm's scales of the batch are known already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from engine.activations.state import LayerActivationState
from engine.activations.windows import TokenizedCorpus
from engine.errors import ScanCancelled


class _ReachedFinalNorm(Exception):
    """Raised from the final norm's hook: everything the pass needs has been read."""


def batch_inputs(
    tokenized: TokenizedCorpus, windows: list[tuple[int, int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded token ids [B, L], the mask of real positions, and their global indices in
    order. Padding sits after every real token, so a causal model's real positions never see it."""
    length = max(stop - start for start, stop in windows)
    ids = torch.zeros((len(windows), length), dtype=torch.long)
    mask = torch.zeros((len(windows), length), dtype=torch.bool)
    for row, (start, stop) in enumerate(windows):
        ids[row, : stop - start] = torch.from_numpy(tokenized.token_ids[start:stop])
        mask[row, : stop - start] = True
    index = torch.from_numpy(np.concatenate([np.arange(start, stop) for start, stop in windows]))
    return ids.to(device), mask.to(device), index.to(device)


def is_gated(bridge, layer: int) -> bool:
    """Whether the layer's MLP multiplies an activated gate by an up projection (SwiGLU, GeGLU)."""
    return f"blocks.{layer}.mlp.hook_pre_linear" in bridge.hook_dict


def run_batches(
    bridge,
    tokenized: TokenizedCorpus,
    batches: list[list[tuple[int, int]]],
    batch_numbers: list[int],
    states: dict[int, LayerActivationState],
    scales: np.ndarray,
    device: torch.device,
    after_batch: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    run_lock=None,
    scale_known: Callable[[int], bool] | None = None,
) -> None:
    """Run ``batches[b]`` for each b in ``batch_numbers``, folding activations into ``states``
    and the final norm's scale into ``scales[global index]``. ``after_batch(b, tokens)`` follows
    each finished batch (checkpoints, progress). A batch whose scales are known already
    (``scale_known(b)``) stops after the deepest chosen layer: the layers above it never run."""
    current: dict = {}
    deepest = max(states)

    def read_layer(layer: int):
        def hook(activations: torch.Tensor, hook=None):
            gate, up = current.pop(f"gate{layer}", None), current.pop(f"up{layer}", None)
            width = activations.shape[-1]
            states[layer].update(  # the whole batch, flat, and which of its rows are real positions
                activations.reshape(-1, width),
                current["index"],
                None if gate is None else gate.reshape(-1, width),
                None if up is None else up.reshape(-1, width),
                rows=current["rows"],
            )
            if layer == deepest and current["stop_early"]:
                raise _ReachedFinalNorm()
            return activations

        return hook

    def hold(name: str):
        def hook(values: torch.Tensor, hook=None):
            current[name] = values
            return values

        return hook

    def read_scale(scale: torch.Tensor, hook=None):
        current["scale"] = scale[current["mask"]].reshape(-1)
        raise _ReachedFinalNorm()

    hooks = []
    for layer, state in states.items():
        if state.gated:
            hooks.append((f"blocks.{layer}.mlp.hook_pre", hold(f"gate{layer}")))
            hooks.append((f"blocks.{layer}.mlp.hook_pre_linear", hold(f"up{layer}")))
        hooks.append((f"blocks.{layer}.mlp.hook_post", read_layer(layer)))
    hooks.append(("ln_final.hook_scale", read_scale))
    for number in batch_numbers:
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        ids, mask, index = batch_inputs(tokenized, batches[number], device)
        stop_early = scale_known is not None and scale_known(number)
        current.update(
            mask=mask, index=index, rows=mask.reshape(-1).nonzero().squeeze(1), stop_early=stop_early
        )
        current.pop("scale", None)
        with torch.inference_mode(), run_lock or contextlib.nullcontext():
            try:
                bridge.run_with_hooks(ids, fwd_hooks=hooks)
            except _ReachedFinalNorm:
                pass
        if not stop_early:
            if "scale" not in current:
                raise RuntimeError("the model's final norm reported no scale: its hook never ran")
            scales[index.cpu().numpy()] = current["scale"].double().cpu().numpy()
        if after_batch is not None:
            after_batch(number, int(mask.sum()))
