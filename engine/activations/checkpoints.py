"""A running pass's checkpoints: what one holds, and resuming from it.

A checkpoint holds the batches a rank has read, the windows of those batches, the final norm's
scale and the predicted token at every position read, and each layer's state. A pass resumes from
its own checkpoint, or from one of another pass over the same corpus, windows and batches
(engine.store.evidence_store finds them: another token cap, more layers) when the batches that one
read are batches of this pass, window for window: the states are then exactly those this pass would
have after reading them. Passes with different caps cut the corpus at different places, so the
batch holding a pass's last window may differ; a checkpoint that read such a batch cannot serve,
and is passed over.
"""

from __future__ import annotations

import numpy as np

from engine.activations.final_readout import Readouts
from engine.activations.state import LayerActivationState, pack, unpack
from engine.settings import ActivationSettings
from engine.store.evidence_store import EvidenceStore

Batches = list[list[tuple[int, int]]]
Address = tuple[str, ActivationSettings, list[int], int, int]  # corpus, settings, layers, rank, world


class OtherBatches(Exception):
    """The checkpoint read batches this pass does not read (another cut of the corpus)."""


def _windows(batches: Batches, numbers: list[int]) -> np.ndarray:
    return np.asarray([w for b in numbers for w in batches[b]], dtype=np.int64).reshape(-1, 2)


def checkpoint_arrays(
    states: dict[int, LayerActivationState], readouts: Readouts, done: set[int], batches: Batches
) -> tuple[dict[str, np.ndarray], int]:
    """What a checkpoint holds, and how many tokens it has read."""
    numbers = sorted(done)
    arrays: dict[str, np.ndarray] = {
        "done": np.array(numbers, dtype=np.int64),
        "scales": readouts.scales,
        "predicted": readouts.predicted,
        "windows": _windows(batches, numbers),
        "sizes": np.array([len(batches[b]) for b in numbers], dtype=np.int64),
    }
    for layer, state in states.items():
        for name, value in state.arrays().items():
            arrays[f"L{layer}_{name}"] = value
    return arrays, sum(stop - start for b in numbers for start, stop in batches[b])


def keep(
    store: EvidenceStore,
    address: Address,
    states: dict[int, LayerActivationState],
    readouts: Readouts,
    done: set[int],
    batches: Batches,
) -> None:
    """Write this rank's checkpoint (nothing without a cache)."""
    if store.keeps:
        arrays, read = checkpoint_arrays(states, readouts, done, batches)
        store.keep_checkpoint(pack(arrays), *address, read=read)


def restore(
    arrays: dict[str, np.ndarray],
    states: dict[int, LayerActivationState],
    readouts: Readouts,
    batches: Batches,
    own: bool,
) -> set[int]:
    """Load a checkpoint into ``states`` and ``readouts``; the batches it read. Raises OtherBatches
    when those are not this pass's batches, ValueError (or KeyError, TypeError) when it is damaged
    or of other settings (``states`` may then be half loaded)."""
    done = [int(b) for b in arrays["done"]]
    if "windows" in arrays:
        if any(not 0 <= b < len(batches) for b in done):
            raise OtherBatches()
        sizes = [len(batches[b]) for b in done]
        if sizes != arrays["sizes"].tolist() or not np.array_equal(
            arrays["windows"], _windows(batches, done)
        ):
            raise OtherBatches()
    elif (
        not own or arrays["scales"].shape != readouts.scales.shape
    ):  # a checkpoint written before windows were
        raise OtherBatches()
    for layer, state in states.items():
        state.load_arrays({name: arrays[f"L{layer}_{name}"] for name in state.arrays()})
    for b in done:
        for start, stop in batches[b]:
            readouts.fill(start, stop, arrays["scales"], arrays["predicted"])
    return set(done)


def resume(
    store: EvidenceStore,
    address: Address,
    states: dict[int, LayerActivationState],
    readouts: Readouts,
    batches: Batches,
) -> set[int]:
    """Fill ``states`` and ``readouts`` from the best checkpoint this pass can resume from (see
    EvidenceStore.resumable); the batches it read (none: start afresh). A damaged checkpoint is
    dropped."""
    corpus_hash, settings, layers, rank, world = address
    for their_settings, their_layers in store.resumable(*address):
        their = (corpus_hash, their_settings, their_layers, rank, world)
        blob = store.checkpoint(*their)
        if blob is None:
            continue
        try:
            return restore(unpack(blob), states, readouts, batches, own=their == address)
        except OtherBatches:
            pass
        except (ValueError, KeyError, OSError, TypeError):
            store.forget_checkpoint(*their)
        for layer in states:  # whatever was half loaded
            states[layer] = states[layer].fresh()
        readouts.clear()
    return set()
