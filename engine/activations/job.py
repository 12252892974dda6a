"""The activation pass as a job: cache lookup, tokenizing, the pass over this rank's batches with
checkpoints, the exact merge across ranks, and the evidence that rank 0 writes.

Cache entries (bytes, never pickles): each layer's evidence under the model fingerprint, the
corpus content hash, the activation settings and the scan settings; while a pass runs, each rank's
progress (finished batches and per-neuron state) under the same corpus and settings, so a killed
pass resumes from its last checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from engine import distributed
from engine.activations.evidence import CorpusFacts, direct_effect_weights, layer_evidence
from engine.activations.state import ACT_TOP, LayerActivationState, pack, unpack
from engine.activations.windows import TokenizedCorpus, tokenize_corpus
from engine.corpus import AnyCorpus
from engine.distributed import Ranks
from engine.evidence import LayerActivations
from engine.progress import ActivationListener, ActivationProgress
from engine.results import LayerResult
from engine.settings import ActivationSettings, ScanSettings
from engine.store.keys import EvidenceStore


class JobHost(Protocol):
    """What the job needs of the engine that runs it (``NeuronEngine`` is one): the model to run,
    the device of a rank, the lock that keeps forward passes apart, a layer's scan (the lift's
    tokens), each token's normalised form and where evidence is kept."""

    run_lock: threading.Lock
    evidence_store: EvidenceStore

    def rank_device(self, ranks: Ranks) -> torch.device: ...

    def activation_model(self, ranks: Ranks | None = None) -> tuple: ...

    def layer(self, layer: int, settings: ScanSettings) -> LayerResult: ...

    def token_forms(self, size: int) -> np.ndarray: ...


class ActivationJob:
    def __init__(
        self,
        engine: JobHost,
        layers: list[int],
        corpus: AnyCorpus,
        settings: ActivationSettings,
        scan: ScanSettings,
        ranks: Ranks = distributed.SINGLE,
        listener: ActivationListener | None = None,
        cancelled: Callable[[], bool] | None = None,
        checkpoint_seconds: float = 30.0,
    ):
        self.engine, self.layers, self.corpus = engine, layers, corpus
        self.store = engine.evidence_store
        self.settings, self.scan, self.ranks = settings, scan, ranks
        self.listener = listener or (lambda progress: None)
        self.cancelled = cancelled
        self.checkpoint_seconds = checkpoint_seconds
        self.batches_run = 0  # batches this process computed (not resumed): for tests

    # --- keys ---------------------------------------------------------------------------------
    def progress_key(self) -> str:
        return self.store.keys.pass_progress(
            self.corpus.content_hash, self.settings, self.layers, self.ranks.rank, self.ranks.world
        )

    def cached(self, layer: int) -> LayerActivations | None:
        return self.store.evidence(self.corpus.content_hash, self.settings, self.scan, layer)

    # --- the job ------------------------------------------------------------------------------
    def run(self) -> dict[int, LayerActivations] | None:
        """Every chosen layer's evidence on rank 0; None on the other ranks."""
        started = time.perf_counter()
        distributed.start(self.ranks, self.engine.rank_device(self.ranks))
        found = {layer: self.cached(layer) for layer in self.layers} if self.ranks.is_writer else {}
        all_cached = self.ranks.is_writer and all(v is not None for v in found.values())
        if self._agree(all_cached):
            self.listener(ActivationProgress("cached", seconds=time.perf_counter() - started))
            return {layer: e for layer, e in found.items() if e is not None} if self.ranks.is_writer else None

        self.listener(ActivationProgress("loading"))
        bridge, tokenizer, device = self.engine.activation_model(self.ranks)
        self.listener(ActivationProgress("tokenizing"))
        tokenized = tokenize_corpus(
            self.corpus,
            lambda text: tokenizer(text)["input_ids"],
            self.settings.context,
            self.settings.max_tokens,
            encode_more=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        )
        from engine.activations.forward_pass import is_gated

        d_mlp = int(bridge.cfg.d_mlp)
        states = {
            layer: LayerActivationState(
                d_mlp, self.settings.keep, self.settings.examples, is_gated(bridge, layer), device
            )
            for layer in self.layers
        }
        scales = np.zeros(tokenized.n_positions, dtype=np.float64)
        batches = tokenized.batches(self.settings.windows_per_batch)
        mine = [b for b in range(len(batches)) if self.ranks.owns(b)]
        done = self._resume(states, scales)
        total = sum(stop - start for b in mine for start, stop in batches[b])
        progress = {"tokens": sum(stop - start for b in done for start, stop in batches[b])}
        run_started, last_checkpoint = time.perf_counter(), time.perf_counter()
        resumed_tokens = progress["tokens"]

        def after_batch(number: int, tokens: int) -> None:
            nonlocal last_checkpoint
            done.add(number)
            self.batches_run += 1
            progress["tokens"] += tokens
            self.listener(
                ActivationProgress(
                    "running",
                    progress["tokens"] - resumed_tokens,
                    total - resumed_tokens,
                    time.perf_counter() - run_started,
                )
            )
            if time.perf_counter() - last_checkpoint >= self.checkpoint_seconds:
                self._checkpoint(states, scales, done)
                last_checkpoint = time.perf_counter()

        from engine.activations.forward_pass import run_batches

        todo = [b for b in mine if b not in done]
        run_batches(
            bridge,
            tokenized,
            batches,
            todo,
            states,
            scales,
            device,
            after_batch,
            self.cancelled,
            run_lock=self.engine.run_lock,
        )
        if todo:
            self._checkpoint(states, scales, done)

        self.listener(ActivationProgress("merging"))
        merged = self._merge(states, scales, device)
        if not self.ranks.is_writer:
            distributed.barrier(self.ranks)
            self._forget_progress()
            return None
        results = self._finish(bridge, tokenized, merged, scales)
        distributed.barrier(self.ranks)
        self._forget_progress()
        self.listener(ActivationProgress("done", total, total, time.perf_counter() - started))
        return results

    def _agree(self, flag: bool) -> bool:
        """Rank 0's answer, for every rank (their caches may be on other machines)."""
        if self.ranks.world == 1:
            return flag
        value = torch.tensor(
            [1 if flag else 0], dtype=torch.int64, device=self.engine.rank_device(self.ranks)
        )
        return bool(distributed.sum_all(value, self.ranks).item())

    def _merge(self, states, scales: np.ndarray, device) -> dict[int, LayerActivationState]:
        """Every rank's state folded into one (exact: see engine.activations.state)."""
        if self.ranks.world > 1:
            total = torch.from_numpy(scales).to(device)
            scales[:] = distributed.sum_all(total, self.ranks).cpu().numpy()  # each position on one rank
            for state in states.values():
                for count in state.counts.values():
                    distributed.sum_all(count, self.ranks)
                for lists in state.lists.values():
                    values = distributed.gather_all(lists.values, self.ranks)
                    index = distributed.gather_all(lists.index, self.ranks)
                    lists.values, lists.index = values[0], index[0]
                    for other_values, other_index in zip(values[1:], index[1:]):
                        lists.merge_lists(other_values, other_index)
        return states

    def _finish(
        self, bridge, tokenized: TokenizedCorpus, states, scales: np.ndarray
    ) -> dict[int, LayerActivations]:
        from engine.sources.bridge_source import bridge_final_norm

        unembed = _numpy(bridge.W_U)
        final_norm = bridge_final_norm(bridge)
        norm_weight = None if final_norm is None else final_norm.scale
        centred = final_norm is not None and final_norm.centres
        facts = CorpusFacts(
            tokenized,
            scales,
            tokenized.next_token_counts(int(unembed.shape[1])),
            self.engine.token_forms(int(unembed.shape[1])),
        )
        results = {}
        for layer, state in states.items():
            scan = self.engine.layer(layer, self.scan)
            w_out = _numpy(bridge.blocks[layer].mlp.W_out)
            promote_ids = scan.promote_ids.astype(np.int64)
            suppress_ids = scan.suppress_ids.astype(np.int64)
            result = layer_evidence(
                layer,
                state,
                ACT_TOP,
                facts,
                promote_ids,
                suppress_ids,
                direct_effect_weights(w_out, unembed, norm_weight, centred, promote_ids),
                direct_effect_weights(w_out, unembed, norm_weight, centred, suppress_ids),
                self.settings.examples,
                self.settings.lift_positions,
            )
            self.store.keep_evidence(self.corpus.content_hash, self.settings, self.scan, result)
            results[layer] = result
        self.store.remember_corpus(self.corpus.name, self.corpus.content_hash)
        return results

    # --- checkpoints --------------------------------------------------------------------------
    def _checkpoint(self, states, scales: np.ndarray, done: set[int]) -> None:
        if not self.store.cache:
            return
        arrays: dict[str, np.ndarray] = {"done": np.array(sorted(done), dtype=np.int64), "scales": scales}
        for layer, state in states.items():
            for name, value in state.arrays().items():
                arrays[f"L{layer}_{name}"] = value
        self.store.keep_checkpoint(self.progress_key(), pack(arrays))

    def _resume(self, states, scales: np.ndarray) -> set[int]:
        blob = self.store.checkpoint(self.progress_key())
        if blob is None:
            return set()
        try:
            arrays = unpack(blob)
            for layer, state in states.items():
                state.load_arrays({name: arrays[f"L{layer}_{name}"] for name in state.arrays()})
            if arrays["scales"].shape != scales.shape:
                raise ValueError("another corpus")
            scales[:] = arrays["scales"]
            return set(arrays["done"].tolist())
        except (ValueError, KeyError, OSError, TypeError):
            self.store.forget(self.progress_key())
            for layer in states:  # a damaged checkpoint: start this rank afresh
                states[layer] = states[layer].fresh()
            scales[:] = 0.0
            return set()

    def _forget_progress(self) -> None:
        self.store.forget(self.progress_key())


def _numpy(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu").float().numpy())
