"""One pass of a model over a tokenized corpus, reading every chosen layer's MLP activations with
TransformerLens hooks (``blocks.{l}.mlp.hook_post``: the input of the MLP's output projection) and
the final norm's scale (``ln_final.hook_scale``) and the predicted token (the argmax of the
logits of ``ln_final.hook_out``) at every position. For a gated MLP the gate's pre-activation
(``hook_pre``) and the up projection (``hook_pre_linear``) are read too: they run before the
activation, so they are held until its hook fires.

The per-neuron state is updated inside the hooks; the forward pass stops at the final norm (the
unembedding is never computed), or right after the deepest chosen layer when the final norm's
readout of the batch is known already. The attribution toward the predicted tokens needs that
readout: a batch that does not know it yet holds its chosen layers' activations until the final
norm (or, when they would be many, runs to the final norm alone first).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from engine.activations.expert_pass import ExpertLayer, layer_w_out
from engine.activations.final_readout import FINAL_OUT, FINAL_SCALE
from engine.activations.state import LayerActivationState
from engine.activations.windows import TokenizedCorpus
from engine.dictionaries.encoder import Encoder
from engine.errors import ScanCancelled

ATTRIBUTION_ROWS = 1024  # positions whose float64 attributions a layer holds at once


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


HOLD_BYTES = 1 << 30  # activations a batch may hold for their attribution until its readout is known


class _Batch:
    """What one batch's hooks share: its positions, and its final-norm readout (the scale and
    the predicted token at each real position) once known, before the layers (a known one, or a
    readout pass first) or after them (then each layer's activations wait in ``held``)."""

    def __init__(self, tokenized: TokenizedCorpus, windows, device: torch.device) -> None:
        self.ids, self.mask, self.index = batch_inputs(tokenized, windows, device)
        self.rows = self.mask.reshape(-1).nonzero().squeeze(1)
        self.scale: torch.Tensor | None = None  # [real positions] float64
        self.predicted: torch.Tensor | None = None  # [real positions] int64
        self.held: dict[int, torch.Tensor] = {}
        self.gate: dict[int, torch.Tensor] = {}
        self.up: dict[int, torch.Tensor] = {}
        self.pending: dict[int, torch.Tensor] = {}  # a transcoder's reconstruction, until its target
        self.stop_early = False  # the readout is known: stop after the deepest chosen layer

    def know(self, scales: np.ndarray, predicted: np.ndarray) -> None:
        index = self.index.cpu().numpy()
        self.scale = torch.from_numpy(scales[index]).to(self.index.device)
        self.predicted = torch.from_numpy(predicted[index]).to(self.index.device)
        self.stop_early = True


class _Pass:
    """The hooks of a pass over batches: each chosen layer's activations folded into its state
    (and their attribution toward the predicted tokens), the final norm's readout read."""

    def __init__(
        self,
        bridge,
        states: dict[int, LayerActivationState],
        device: torch.device,
        encoders: dict[int, Encoder] | None = None,
    ) -> None:
        from engine.activations.final_readout import FinalReadout

        self.bridge, self.states, self.deepest = bridge, states, max(states)
        # A dictionary's layers: its encoder on the hook it reads (engine.dictionaries.encoder).
        self.encoders = encoders or {}
        self.readout = FinalReadout(bridge, device)
        self.batch: _Batch | None = None
        # Layers of experts are read off the model's own modules (engine.activations.expert_pass).
        self.expert_layers = {
            layer: ExpertLayer(bridge, layer, state.experts)
            for layer, state in states.items()
            if state.experts is not None
        }
        self._w_out: dict[int, torch.Tensor] = {}

    def hooks(self, layers: bool = True) -> list:
        found = []
        for layer, state in self.states.items() if layers else ():
            if layer in self.encoders:
                found.extend(self._dictionary_hooks(layer))
                continue
            if state.gated:
                found.append((f"blocks.{layer}.mlp.hook_pre", self._hold(layer, "gate")))
                found.append((f"blocks.{layer}.mlp.hook_pre_linear", self._hold(layer, "up")))
            if layer in self.expert_layers:
                found.append((f"blocks.{layer}.mlp.hook_out", self._read_expert_layer(layer)))
                continue
            found.append((f"blocks.{layer}.mlp.hook_post", self._read_layer(layer)))
        return found + [(FINAL_SCALE, self._read_scale), (FINAL_OUT, self._read_out)]

    def _hold(self, layer: int, part: str):
        def hook(values: torch.Tensor, hook=None):
            assert self.batch is not None
            getattr(self.batch, part)[layer] = values
            return values

        return hook

    def _read_layer(self, layer: int):
        def hook(activations: torch.Tensor, hook=None):
            batch = self.batch
            assert batch is not None
            gate, up = batch.gate.pop(layer, None), batch.up.pop(layer, None)
            width = activations.shape[-1]
            flat = activations.reshape(-1, width)
            self.states[layer].update(  # the whole batch, flat, and which of its rows are real positions
                flat,
                batch.index,
                None if gate is None else gate.reshape(-1, width),
                None if up is None else up.reshape(-1, width),
                rows=batch.rows,
            )
            if batch.scale is None:
                batch.held[layer] = flat  # attributed once the final norm is read
            else:
                self.attribute(layer, flat[batch.rows])
            if layer == self.deepest and batch.stop_early:
                raise _ReachedFinalNorm()
            return activations

        return hook

    def _read_expert_layer(self, layer: int):
        """After a layer of experts has run: its neurons' activations where their experts ran."""

        def hook(output: torch.Tensor, hook=None):
            batch = self.batch
            assert batch is not None
            acts, gates, weighted = self.expert_layers[layer].take()
            state = self.states[layer]
            state.update(acts, batch.index, rows=batch.rows)
            state.count_routed(gates, batch.rows)
            # What a neuron adds to the residual is its activation times its expert's weight.
            if batch.scale is None:
                batch.held[layer] = weighted
            else:
                self.attribute(layer, weighted[batch.rows])
            if layer == self.deepest and batch.stop_early:
                raise _ReachedFinalNorm()
            return output

        return hook

    def _dictionary_hooks(self, layer: int) -> list:
        """A dictionary's hooks: its encoder's input, and (a transcoder) the activations its
        decoder reconstructs, for the explained variance."""
        info = self.encoders[layer].dictionary.info
        hooks = [(info.hook_in, self._read_dictionary(layer))]
        if info.hook_out != info.hook_in:
            hooks.append((info.hook_out, self._read_target(layer)))
        return hooks

    def _read_dictionary(self, layer: int):
        encoder = self.encoders[layer]
        info = encoder.dictionary.info
        fits = len(info.writes_to) == 1  # a CLT's layers' outputs add several dictionaries

        def hook(values: torch.Tensor, hook=None):
            batch = self.batch
            assert batch is not None
            x = values.reshape(-1, values.shape[-1])
            acts = encoder.encode(x)
            self.states[layer].update(acts, batch.index, rows=batch.rows)
            if fits:
                reconstruction = encoder.decode(acts[batch.rows], x[batch.rows])
                if info.hook_out == info.hook_in:
                    self.states[layer].count_fit(x[batch.rows], reconstruction)
                else:
                    batch.pending[layer] = reconstruction
            # A feature adds its activation times its direction: the attribution reads the
            # activations against the directions (engine.dictionaries.weights.direction_rows).
            if batch.scale is None:
                batch.held[layer] = acts
            else:
                self.attribute(layer, acts[batch.rows])
            self._stop_after(layer, info.hook_out == info.hook_in or not fits)
            return values

        return hook

    def _read_target(self, layer: int):
        def hook(values: torch.Tensor, hook=None):
            batch = self.batch
            assert batch is not None
            reconstruction = batch.pending.pop(layer, None)
            if reconstruction is not None:
                target = values.reshape(-1, values.shape[-1])[batch.rows]
                self.states[layer].count_fit(target, reconstruction)
            self._stop_after(layer, True)
            return values

        return hook

    def _stop_after(self, layer: int, last_hook: bool) -> None:
        batch = self.batch
        assert batch is not None
        if last_hook and layer == self.deepest and batch.stop_early:
            raise _ReachedFinalNorm()

    def _layer_w_out(self, layer: int) -> torch.Tensor:
        if layer in self.encoders and layer not in self._w_out:
            self._w_out[layer] = self.encoders[layer].directions
        if layer not in self._w_out:
            self._w_out[layer] = layer_w_out(self.bridge, layer, self.states[layer].experts)
        return self._w_out[layer]

    def attribute(self, layer: int, activations: torch.Tensor) -> None:
        """A layer's real positions' attributions toward their predicted tokens, into its state."""
        batch = self.batch
        assert batch is not None and batch.scale is not None and batch.predicted is not None
        w_out = self._layer_w_out(layer)
        for start in range(0, activations.shape[0], ATTRIBUTION_ROWS):
            part = slice(start, start + ATTRIBUTION_ROWS)
            dla = self.readout.dla(activations[part], w_out, batch.predicted[part], batch.scale[part])
            self.states[layer].update_attribution(dla, activations[part])

    def _read_scale(self, scale: torch.Tensor, hook=None):
        assert self.batch is not None
        self.batch.scale = scale[self.batch.mask].reshape(-1).double()
        return scale

    def _read_out(self, normalized: torch.Tensor, hook=None):
        batch = self.batch
        assert batch is not None
        batch.predicted = self.readout.predicted(normalized[batch.mask])
        raise _ReachedFinalNorm()

    def run(self, ids: torch.Tensor, hooks: list, run_lock) -> None:
        with torch.inference_mode(), run_lock or contextlib.nullcontext():
            for experts in self.expert_layers.values():
                experts.attach()
            try:
                self.bridge.run_with_hooks(ids, fwd_hooks=hooks)
            except _ReachedFinalNorm:
                pass
            finally:
                for experts in self.expert_layers.values():
                    experts.detach()

    def finish(self) -> None:
        """After a forward pass that read the readout: the held layers' attributions."""
        batch = self.batch
        assert batch is not None
        if batch.scale is None or batch.predicted is None:
            raise RuntimeError("the model's final norm reported no scale: its hook never ran")
        for layer in sorted(batch.held):
            self.attribute(layer, batch.held.pop(layer)[batch.rows])


def run_batches(
    bridge,
    tokenized: TokenizedCorpus,
    batches: list[list[tuple[int, int]]],
    batch_numbers: list[int],
    states: dict[int, LayerActivationState],
    scales: np.ndarray,
    predicted: np.ndarray,
    device: torch.device,
    after_batch: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    run_lock=None,
    scale_known: Callable[[int], bool] | None = None,
    hold_bytes: int | None = None,
    encoders: dict[int, Encoder] | None = None,
) -> None:
    """Run ``batches[b]`` for each b in ``batch_numbers``, folding activations and their
    attribution into ``states``, the final norm's scale into ``scales[global index]`` and the
    predicted token into ``predicted``. ``after_batch(b, tokens)`` follows each finished batch
    (checkpoints, progress). A batch whose readout is known already (``scale_known(b)``) stops
    after the deepest chosen layer: the layers above it never run. One whose readout is not known
    holds its chosen layers' activations until the final norm, or, when they would take more than
    ``hold_bytes`` (default ``HOLD_BYTES``), runs to the final norm alone first."""
    hold = HOLD_BYTES if hold_bytes is None else hold_bytes
    hooks = _Pass(bridge, states, device, encoders)
    for number in batch_numbers:
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        batch = hooks.batch = _Batch(tokenized, batches[number], device)
        if scale_known is not None and scale_known(number):
            batch.know(scales, predicted)
        elif batch.ids.numel() * sum(s.d_mlp for s in states.values()) * 4 > hold:
            hooks.run(batch.ids, hooks.hooks(layers=False), run_lock)  # the readout alone first
            batch.stop_early = True
        hooks.run(batch.ids, hooks.hooks(), run_lock)
        if not batch.stop_early or batch.held:
            hooks.finish()
        index = batch.index.cpu().numpy()
        assert batch.scale is not None and batch.predicted is not None
        scales[index] = batch.scale.cpu().numpy()
        predicted[index] = batch.predicted.cpu().numpy()
        if after_batch is not None:
            after_batch(number, int(batch.mask.sum()))
