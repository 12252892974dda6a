"""One typed text through the model: per token, the neurons that fire hardest for themselves (by
activation relative to each neuron's own scale, ``engine.data.neuron_scale``), or every neuron of
one layer (the probe of one neuron).

The same hooks as the corpus pass (``blocks.{l}.mlp.hook_post``), on one sequence; the forward
pass stops after the deepest layer asked for. Position 0 and special tokens (a BOS) are marked:
their activations are on another scale (the first position is an attention sink), so the front
ends show them apart and leave them out of rankings. Returns plain arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from engine.activations.expert_pass import ExpertLayer
from engine.data.experts import LayerExperts
from engine.data.firing import LayerFiring, PromptFiring
from engine.data.neuron_scale import NeuronScales, text_scale
from engine.dictionaries.encoder import Encoder


def marked_positions(tokenizer, ids: list[int]) -> np.ndarray:
    """Position 0 and every special token (BOS, chat markers)."""
    special = set(getattr(tokenizer, "all_special_ids", None) or ())
    marked = np.array([token in special for token in ids], dtype=bool)
    if marked.size:
        marked[0] = True
    return marked


def _run_to(bridge, ids: list[int], hooks: list, device: torch.device, listened=None) -> None:
    """The forward pass, stopped by the deepest hook raising ``_Stop`` (``listened``: the layers of
    experts whose modules are listened to meanwhile, engine.activations.expert_pass)."""
    listened = listened or {}
    with torch.inference_mode():
        for experts in listened.values():
            experts.attach()
        try:
            bridge.run_with_hooks(torch.tensor([ids], device=device), fwd_hooks=hooks)
        except _Stop:
            pass
        finally:
            for experts in listened.values():
                experts.detach()


def _layer_hooks(
    bridge,
    layers: list[int],
    experts: Mapping[int, LayerExperts],
    reader,
    encoders: Mapping[int, Encoder] | None = None,
) -> tuple[list, dict]:
    """Hooks handing ``reader(layer)`` each layer's activations [1, positions, width]: a dense
    MLP's at hook_post, a layer of experts' (0 where an expert did not run) once it has run, a
    dictionary's features (``encoders``) encoded from the hook it reads."""
    listened = {layer: ExpertLayer(bridge, layer, experts[layer]) for layer in layers if layer in experts}
    hooks: list[tuple[str, object]] = []
    for layer in layers:
        read = reader(layer)
        encoder = (encoders or {}).get(layer)
        if encoder is not None:

            def encoded(values: torch.Tensor, hook=None, read=read, encoder=encoder):
                read(encoder.encode(values[0]).unsqueeze(0))
                return values

            hooks.append((encoder.dictionary.info.hook_in, encoded))
            continue
        if layer not in listened:
            hooks.append((f"blocks.{layer}.mlp.hook_post", read))
            continue

        def after(output: torch.Tensor, hook=None, layer=layer, read=read):
            read(listened[layer].take()[0].unsqueeze(0))
            return output

        hooks.append((f"blocks.{layer}.mlp.hook_out", after))
    return hooks, listened


def probe_layer(
    bridge,
    tokenizer,
    text: str,
    layer: int,
    device: torch.device,
    experts: LayerExperts | None = None,
    encoder: Encoder | None = None,
) -> LayerFiring:
    ids = tokenizer(text)["input_ids"]
    d_mlp = int(bridge.cfg.d_mlp) if experts is None else experts.width
    if encoder is not None:
        d_mlp = encoder.dictionary.info.d_sae
    if not ids:
        return LayerFiring(np.zeros(0, np.int64), layer, np.zeros((0, d_mlp), np.float32), np.zeros(0, bool))
    found: dict[str, np.ndarray] = {}

    def read(activations: torch.Tensor, hook=None):
        found["values"] = activations[0].float().cpu().numpy()
        raise _Stop()

    hooks, listened = _layer_hooks(
        bridge,
        [layer],
        {} if experts is None else {layer: experts},
        lambda _: read,
        None if encoder is None else {layer: encoder},
    )
    _run_to(bridge, ids, hooks, device, listened)
    gates = listened[layer].last_gates if layer in listened else None
    return LayerFiring(
        np.asarray(ids, dtype=np.int64),
        layer,
        found["values"],
        marked_positions(tokenizer, ids),
        ran=None if gates is None else (gates > 0).cpu().numpy(),
    )


class _Stop(Exception):
    pass


def probe_text(
    bridge,
    tokenizer,
    text: str,
    layers: list[int],
    top: int,
    device: torch.device,
    scales: NeuronScales,
    experts: Mapping[int, LayerExperts] | None = None,
    encoders: Mapping[int, Encoder] | None = None,
) -> PromptFiring:
    """Per token, each layer's ``top`` neurons by |activation / scale| (ties: the lower neuron),
    the scales being the corpus's (``scales.layers``, [d_mlp]) or this text's own (``text_scale``,
    [positions, d_mlp])."""
    ids = tokenizer(text)["input_ids"]
    if not ids:
        empty = np.zeros((0, len(layers), top))
        return PromptFiring(
            np.zeros(0, np.int64),
            layers,
            empty.astype(np.int64),
            empty.astype(np.float32),
            np.zeros(0, bool),
            empty,
            scales.words,
        )
    marked = marked_positions(tokenizer, ids)
    found: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    deepest = max(layers)

    listening: dict[int, ExpertLayer] = {}  # filled below: where each layer of experts ran

    def read(layer: int):
        def hook(activations: torch.Tensor, hook=None):
            values = activations[0].double()
            scale = scales.layers.get(layer)
            if scale is None:
                gates = listening[layer].last_gates if layer in listening else None
                ran = None if gates is None else (gates > 0).cpu().numpy()
                scale = text_scale(values.cpu().numpy(), marked, ran)
            relative = values / torch.from_numpy(scale).to(values.device)
            order = torch.sort(relative.abs(), dim=1, descending=True, stable=True).indices[:, :top]
            found[layer] = (order, values.gather(1, order), relative.gather(1, order))
            if layer == deepest:
                raise _Stop()
            return activations

        return hook

    hooks, listened = _layer_hooks(bridge, layers, experts or {}, read, encoders)
    listening.update(listened)
    _run_to(bridge, ids, hooks, device, listened)

    def stacked(part: int) -> np.ndarray:
        return np.stack([found[layer][part].cpu().numpy() for layer in layers], axis=1)

    return PromptFiring(
        np.asarray(ids, dtype=np.int64),
        layers,
        stacked(0),
        stacked(1).astype(np.float32),
        marked,
        stacked(2),
        scales.words,
    )
