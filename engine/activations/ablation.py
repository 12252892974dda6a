"""One neuron set to 0 at one position at a time, the rest of the model recomputed: the change of
the target's logit at that position (``engine.data.attribution`` defines it).

Zeroing a neuron at position p changes nothing before p (the model is causal), so the ablation
of p runs the text's first p + 1 tokens or more and reads the logit at p. Consecutive positions
share a forward pass: positions [a, b) are b − a rows of the text's first b tokens, each with its
own position zeroed, beside one row left as it is, whose logits are the clean ones the deltas are
taken from (the same shapes, so the same rounding). The unembedding is never computed: the
target's logit is read from the final norm's output.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch

from engine.activations.attribution import StopPass, clean_run, run_hooks
from engine.activations.final_readout import FINAL_OUT, FinalReadout
from engine.activations.probe import marked_positions
from engine.data.attribution import NeuronAblation
from engine.data.progress import AttributionListener, AttributionProgress
from engine.errors import ScanCancelled


def ablation_batches(n_positions: int, batch_tokens: int) -> list[range]:
    """Runs of consecutive positions ablated together: one clean row and one row per position, each
    as long as the run's last position + 1, at most ``batch_tokens`` tokens (one position at least)."""
    runs = []
    start = 0
    while start < n_positions:
        count = 1
        while start + count < n_positions and (count + 2) * (start + count + 1) <= batch_tokens:
            count += 1
        runs.append(range(start, start + count))
        start += count
    return runs


def ablate_neuron(
    bridge,
    ids: list[int],
    layer: int,
    neuron: int,
    readout: FinalReadout,
    targets: torch.Tensor,
    batch_tokens: int,
    run_lock=None,
    on_positions: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """[positions] float64: the target's logit at each position p with ``neuron`` of ``layer``
    zeroed at p alone, minus its logit as it is. ``on_positions(n)`` hears of each run's n."""
    delta = torch.zeros(len(ids), dtype=torch.float64)
    for run in ablation_batches(len(ids), batch_tokens):
        if cancelled is not None and cancelled():
            raise ScanCancelled()
        with run_lock or contextlib.nullcontext():
            delta[run.start : run.stop] = _ablated_run(bridge, ids, run, layer, neuron, readout, targets)
        if on_positions is not None:
            on_positions(len(run))
    return delta


def _ablated_run(
    bridge, ids: list[int], run: range, layer: int, neuron: int, readout: FinalReadout, targets: torch.Tensor
) -> torch.Tensor:
    """One forward pass: the run's positions each ablated in a row of its own, beside a clean row."""
    device = targets.device
    positions = torch.arange(run.start, run.stop, device=device)
    rows = torch.arange(1, len(run) + 1, device=device)
    tensor = torch.tensor([ids[: run.stop]], device=device).repeat(len(run) + 1, 1)
    wanted = targets[run.start : run.stop]
    found: dict[str, torch.Tensor] = {}

    def zero(activations: torch.Tensor, hook=None):
        activations[rows, positions, neuron] = 0
        return activations

    def read(normalized: torch.Tensor, hook=None):
        found["clean"] = readout.logits(normalized[0, run.start : run.stop], wanted)
        found["ablated"] = readout.logits(normalized[rows, positions], wanted)
        raise StopPass()

    run_hooks(bridge, tensor, [(f"blocks.{layer}.mlp.hook_post", zero), (FINAL_OUT, read)])
    return (found["ablated"] - found["clean"]).cpu()


def neuron_ablation(
    bridge,
    tokenizer,
    ids: list[int],
    layer: int,
    neuron: int,
    target_id: int | None,
    device: torch.device,
    batch_tokens: int,
    run_lock=None,
    listener: AttributionListener | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> NeuronAblation:
    """``neuron`` of ``layer`` ablated at every position of ``ids`` in turn, beside what its weights
    predict of it (−dla toward the same targets, through the clean run's final-norm scales)."""
    started = time.perf_counter()
    readout = FinalReadout(bridge, device)
    tensor = torch.tensor([ids], device=device)
    with run_lock or contextlib.nullcontext():
        clean = clean_run(bridge, tensor, readout, target_id, watch=((layer, neuron),))
    activation = clean.watched[(layer, neuron)]
    w_row = bridge.blocks[layer].mlp.W_out.detach()[neuron : neuron + 1]
    dla = readout.dla(activation[:, None], w_row, clean.targets, clean.scales)[:, 0]
    done = 0

    def ablated(count: int) -> None:
        nonlocal done
        done += count
        if listener is not None:
            listener(AttributionProgress("ablating", done, len(ids), time.perf_counter() - started))

    delta = ablate_neuron(
        bridge, ids, layer, neuron, readout, clean.targets, batch_tokens, run_lock, ablated, cancelled
    )
    return NeuronAblation(
        token_ids=np.asarray(ids, dtype=np.int64),
        layer=layer,
        neuron=neuron,
        target_ids=clean.targets.cpu().numpy().astype(np.int64),
        targeted=target_id is not None,
        logits=clean.logits.cpu().numpy().astype(np.float64),
        activation=activation.cpu().numpy().astype(np.float32),
        delta_logit=delta.numpy(),
        direct=(-dla).cpu().numpy(),
        marked=marked_positions(tokenizer, ids),
    )
