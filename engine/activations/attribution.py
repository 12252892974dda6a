"""Which neurons made the token at each position of a text: direct logit attribution
(``engine.data.attribution`` defines it), computed in two forward passes.

The first runs the text to the final norm and reads, at every position, the norm's scale and its
output, from which the target (the predicted token, or the one given) and its logit come. The
second runs to the deepest layer attributed; each layer's hook turns its activations into float64
attributions a few hundred positions at a time and folds them into the running top and bottom
lists and the total, so no [positions, neurons] array of more than one layer is ever held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from engine.activations.final_readout import FINAL_OUT, FINAL_SCALE, FinalReadout
from engine.activations.probe import marked_positions
from engine.data.attribution import TextAttribution
from engine.data.progress import AttributionListener, AttributionProgress
from engine.errors import ScanCancelled, UserError

CHUNK_ROWS = 512  # positions whose float64 attributions one layer holds at once


class StopPass(Exception):
    """Raised from a hook once everything a pass needs has been read."""


def text_ids(tokenizer, text: str, n_ctx: int | None) -> list[int]:
    """The text's token ids as the tokenizer gives them by default; one line when the text is
    empty or longer than the model's context."""
    if not text.strip():
        raise UserError("the text is empty: give some text")
    ids = list(tokenizer(text)["input_ids"])
    if n_ctx is not None and len(ids) > n_ctx:
        raise UserError(
            f"the text is {len(ids):,} tokens long, more than the model's context of {n_ctx:,}: shorten it"
        )
    return ids


def target_token(tokenizer, target: str) -> int:
    """The one token ``target`` is, as the tokenizer reads it without special tokens."""
    ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if len(ids) != 1:
        raise UserError(
            f"the target {target!r} is {len(ids)} tokens for this model's tokenizer, not one: "
            "give a single token (mind a leading space)"
        )
    return int(ids[0])


@dataclass
class CleanRun:
    """The text's own run, read at the final norm: per position the norm's scale, the target and
    its logit (float64), and the activations of any neurons asked for."""

    scales: torch.Tensor  # [positions] float64
    targets: torch.Tensor  # [positions] int64
    logits: torch.Tensor  # [positions] float64
    watched: dict[tuple[int, int], torch.Tensor]  # (layer, neuron): [positions] float32


def clean_run(
    bridge,
    ids: torch.Tensor,
    readout: FinalReadout,
    target_id: int | None,
    watch: tuple[tuple[int, int], ...] = (),
) -> CleanRun:
    """The forward pass of ``ids`` [1, positions] to the final norm's output (the unembedding is
    never computed); ``watch``: neurons whose activations are read on the way."""
    found: dict = {}
    watched: dict[tuple[int, int], torch.Tensor] = {}

    def read_scale(scale: torch.Tensor, hook=None):
        found["scale"] = scale[0].reshape(-1).double()
        return scale

    def read_out(normalized: torch.Tensor, hook=None):
        found["out"] = normalized[0]
        raise StopPass()

    def watcher(layer: int, neurons: list[int]):
        def hook(activations: torch.Tensor, hook=None):
            for neuron in neurons:
                watched[(layer, neuron)] = activations[0, :, neuron].float().clone()
            return activations

        return hook

    by_layer: dict[int, list[int]] = {}
    for layer, neuron in watch:
        by_layer.setdefault(layer, []).append(neuron)
    hooks = [(f"blocks.{layer}.mlp.hook_post", watcher(layer, ns)) for layer, ns in by_layer.items()]
    hooks += [(FINAL_SCALE, read_scale), (FINAL_OUT, read_out)]
    run_hooks(bridge, ids, hooks)
    out = found["out"]
    if target_id is None:
        targets = readout.predicted(out)
    else:
        targets = torch.full((out.shape[0],), target_id, dtype=torch.long, device=out.device)
    return CleanRun(found["scale"], targets, readout.logits(out, targets), watched)


def run_hooks(bridge, ids: torch.Tensor, hooks: list) -> None:
    """The forward pass of ``ids`` with ``hooks``, ended early by a hook raising StopPass."""
    with torch.inference_mode():
        try:
            bridge.run_with_hooks(ids, fwd_hooks=hooks)
        except StopPass:
            pass


def best_columns(values: torch.Tensor, width: int, descending: bool) -> torch.Tensor:
    """[n, width]: per row, the columns of the ``width`` largest (``descending``) or smallest
    values, in the order a stable sort gives (equal values: the lower column first). topk, not a
    sort of the whole row (a layer's sorts cost more than its forward pass); when values equal to
    the last one kept run past ``width``, topk's pick among them is not defined: the sort then."""
    kept, columns = torch.topk(values, width, dim=1, largest=descending, sorted=True)
    edge = kept[:, -1:]
    better = (values > edge) if descending else (values < edge)
    if not bool(((better | (values == edge)).sum(dim=1) == width).all()):
        return torch.sort(values, dim=1, descending=descending, stable=True).indices[:, :width]
    columns = columns.sort(dim=1).values  # by column, so that the stable sort breaks ties by it
    order = torch.sort(values.gather(1, columns), dim=1, descending=descending, stable=True).indices
    return columns.gather(1, order)


class RankedNeurons:
    """Per position, the running ``top`` largest and ``top`` most negative attributions over the
    layers seen so far (in increasing order, so a stable sort breaks ties to the lower layer, then
    the lower neuron), and the running total. Slots not filled yet hold ∓inf and layer -1."""

    def __init__(self, n_positions: int, top: int, device: torch.device) -> None:
        self.top, self.offered = top, 0

        def lists(empty: float) -> list[torch.Tensor]:  # (dla, layer, neuron, activation)
            shape = (n_positions, top)
            return [
                torch.full(shape, empty, dtype=torch.float64, device=device),
                torch.full(shape, -1, dtype=torch.int64, device=device),
                torch.full(shape, -1, dtype=torch.int64, device=device),
                torch.zeros(shape, dtype=torch.float32, device=device),
            ]

        self.high, self.low = lists(-torch.inf), lists(torch.inf)
        self.total = torch.zeros(n_positions, dtype=torch.float64, device=device)

    def offer(self, rows: slice, layer: int, dla: torch.Tensor, activations: torch.Tensor) -> None:
        """A layer's attributions ``dla`` [n, d_mlp] at positions ``rows``, with its activations."""
        self.total[rows] += dla.sum(dim=1)
        width = min(self.top, dla.shape[1])
        for kept, descending in ((self.high, True), (self.low, False)):
            order = best_columns(dla, width, descending)
            values = [dla.gather(1, order), torch.full_like(order, layer), order]
            values.append(activations.float().gather(1, order))
            merged = [torch.cat([old[rows], new], dim=1) for old, new in zip(kept, values)]
            keep = torch.sort(merged[0], dim=1, descending=descending, stable=True).indices[:, : self.top]
            for part, value in zip(kept, merged):
                part[rows] = value.gather(1, keep)

    def layer_done(self, d_mlp: int) -> None:
        self.offered += d_mlp

    def shown(self, kept: list[torch.Tensor]) -> list[torch.Tensor]:
        """The lists without the slots no neuron filled (fewer neurons than ``top``)."""
        count = min(self.top, self.offered)
        return [part[:, :count] for part in kept]


def attribute_text(
    bridge,
    tokenizer,
    ids: list[int],
    layers: list[int],
    top: int,
    target_id: int | None,
    device: torch.device,
    run_lock=None,
    listener: AttributionListener | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> TextAttribution:
    """Every position's attribution over ``layers`` (each the top ``top`` both ways)."""
    import contextlib

    started = time.perf_counter()
    say = listener or (lambda progress: None)
    tensor = torch.tensor([ids], device=device)
    readout = FinalReadout(bridge, device)
    lock = run_lock or contextlib.nullcontext()
    say(AttributionProgress("running", 0, len(layers) + 1))
    with lock:
        clean = clean_run(bridge, tensor, readout, target_id)
    say(AttributionProgress("running", 1, len(layers) + 1, time.perf_counter() - started))
    ranked = RankedNeurons(len(ids), top, device)
    deepest = max(layers)

    def attribute(layer: int):
        def hook(activations: torch.Tensor, hook=None):
            if cancelled is not None and cancelled():
                raise ScanCancelled()
            w_out = bridge.blocks[layer].mlp.W_out.detach()
            values = activations[0]
            for start in range(0, values.shape[0], CHUNK_ROWS):
                rows = slice(start, start + CHUNK_ROWS)
                dla = readout.dla(values[rows], w_out, clean.targets[rows], clean.scales[rows])
                ranked.offer(rows, layer, dla, values[rows])
            ranked.layer_done(values.shape[1])
            done = sorted(layers).index(layer) + 2
            say(AttributionProgress("running", done, len(layers) + 1, time.perf_counter() - started))
            if layer == deepest:
                raise StopPass()
            return activations

        return hook

    hooks = [(f"blocks.{layer}.mlp.hook_post", attribute(layer)) for layer in sorted(layers)]
    with lock:
        run_hooks(bridge, tensor, hooks)
    return _attribution(ids, layers, clean, ranked, target_id is not None, marked_positions(tokenizer, ids))


def _attribution(
    ids: list[int], layers: list[int], clean: CleanRun, ranked: RankedNeurons, targeted: bool, marked
) -> TextAttribution:
    def numpy(tensor: torch.Tensor, dtype) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(dtype)

    high_dla, high_layer, high_neuron, high_act = ranked.shown(ranked.high)
    low_dla, low_layer, low_neuron, low_act = ranked.shown(ranked.low)
    return TextAttribution(
        token_ids=np.asarray(ids, dtype=np.int64),
        layers=tuple(sorted(layers)),
        target_ids=numpy(clean.targets, np.int64),
        targeted=targeted,
        logits=numpy(clean.logits, np.float64),
        scales=numpy(clean.scales, np.float64),
        neuron_total=numpy(ranked.total, np.float64),
        top_layer=numpy(high_layer, np.int32),
        top_neuron=numpy(high_neuron, np.int32),
        top_activation=numpy(high_act, np.float32),
        top_dla=numpy(high_dla, np.float64),
        low_layer=numpy(low_layer, np.int32),
        low_neuron=numpy(low_neuron, np.int32),
        low_activation=numpy(low_act, np.float32),
        low_dla=numpy(low_dla, np.float64),
        marked=marked,
    )
