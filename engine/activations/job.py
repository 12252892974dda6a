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

from engine.activations.corpus import AnyCorpus
from engine.activations.evidence import CorpusFacts, direct_effect_weights, layer_evidence
from engine.activations.state import ACT_TOP, LayerActivationState, pack, unpack
from engine.activations.windows import TokenizedCorpus, tokenize_corpus
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.progress import ActivationListener, ActivationProgress
from engine.data.results import LayerResult
from engine.errors import ScanCancelled
from engine.runtime import distributed
from engine.runtime.ranks import SINGLE, Ranks
from engine.settings import ActivationSettings, ScanSettings
from engine.store.evidence_store import EvidenceStore


class JobHost(Protocol):
    """What the job needs of the engine that runs it (``NeuronEngine`` is one): the model to run,
    the device of a rank, the lock that keeps forward passes apart, a layer's scan (the lift's
    tokens), each token's normalised form and where evidence is kept."""

    run_lock: threading.Lock
    evidence_store: EvidenceStore

    def rank_device(self, ranks: Ranks) -> torch.device: ...

    def activation_model(self, ranks: Ranks | None = None) -> tuple: ...

    def layer(
        self, layer: int, settings: ScanSettings, cancelled: Callable[[], bool] | None = None
    ) -> LayerResult: ...

    def token_forms(self, size: int) -> np.ndarray: ...


Landed = Callable[[int, LayerActivations, EvidenceReading], None]


class ActivationJob:
    def __init__(
        self,
        engine: JobHost,
        layers: list[int],
        corpus: AnyCorpus,
        settings: ActivationSettings,
        scan: ScanSettings,
        ranks: Ranks = SINGLE,
        listener: ActivationListener | None = None,
        cancelled: Callable[[], bool] | None = None,
        checkpoint_seconds: float = 30.0,
        on_landed: Landed | None = None,
        land_seconds: float | None = None,
    ):
        """``on_landed(layer, evidence, reading)`` hears each layer's evidence of the tokens read so
        far: at every checkpoint (kept in the cache too), when stopped, and (single process) every
        ``land_seconds`` from the first batch on, for a front end to show as the pass reads."""
        self.engine, self.layers, self.corpus = engine, layers, corpus
        self.store = engine.evidence_store
        self.settings, self.scan, self.ranks = settings, scan, ranks
        self.listener = listener or (lambda progress: None)
        self.cancelled = cancelled
        self.checkpoint_seconds = checkpoint_seconds
        self.batches_run = 0  # batches this process computed (not resumed): for tests
        self.batches_short = 0  # of them, those that stopped after the deepest chosen layer
        self.on_landed = on_landed
        self.lift_tokens: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # rank 0's, from the scans
        self.land_seconds = land_seconds if on_landed is not None else None

    # --- the pass's place in the cache ---------------------------------------------------------
    def progress_address(self) -> tuple[str, ActivationSettings, list[int], int, int]:
        """Where this rank's checkpoints of this pass are kept."""
        return self.corpus.content_hash, self.settings, self.layers, self.ranks.rank, self.ranks.world

    def cached(self, layer: int) -> LayerActivations | None:
        return self.store.evidence(self.corpus.content_hash, self.settings, self.scan, layer)

    # --- the job ------------------------------------------------------------------------------
    def run(self) -> dict[int, LayerActivations] | None:
        """Every chosen layer's evidence on rank 0; None on the other ranks. Stopped (``cancelled``
        or Ctrl+C), it keeps a checkpoint and lands what it has read, then raises."""
        started = time.perf_counter()
        distributed.start(self.ranks, self.engine.rank_device(self.ranks))
        found = {layer: self.cached(layer) for layer in self.layers} if self.ranks.is_writer else {}
        all_cached = self.ranks.is_writer and all(v is not None for v in found.values())
        if self._agree(all_cached):
            self.listener(ActivationProgress("cached", seconds=time.perf_counter() - started))
            return {layer: e for layer, e in found.items() if e is not None} if self.ranks.is_writer else None

        self.listener(ActivationProgress("loading"))
        if self.ranks.is_writer:
            # The lift reads each layer's scan: computed (when not cached) before the model is
            # loaded, so that the scan's working memory and the model's never add up.
            self.lift_tokens = self._lift_tokens()
        bridge, tokenizer, device = self.engine.activation_model(self.ranks)
        self.listener(ActivationProgress("tokenizing"))
        tokenized = tokenize_corpus(
            self.corpus,
            lambda text: tokenizer(text)["input_ids"],
            self.settings.context,
            self.settings.max_tokens,
            encode_more=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        )
        from engine.activations.forward_pass import is_gated, run_batches

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
        scaled = self._known_scales(tokenized, batches, mine, scales)
        total = sum(stop - start for b in mine for start, stop in batches[b])
        resumed = sum(stop - start for b in done for start, stop in batches[b])
        self.lander = _Lander(self, bridge, tokenized, total)
        if resumed:
            self.listener(ActivationProgress("resuming", resumed, total, start_tokens=resumed))
        progress = {"tokens": resumed}
        run_started = last_checkpoint = time.perf_counter()
        last_landing: float | None = None
        interval = {"seconds": self.checkpoint_seconds}

        def after_batch(number: int, tokens: int) -> None:
            nonlocal last_checkpoint, last_landing
            done.add(number)
            self.batches_run += 1
            progress["tokens"] += tokens
            now = time.perf_counter()
            self.listener(
                ActivationProgress("running", progress["tokens"], total, now - run_started, resumed)
            )
            if now - last_checkpoint >= interval["seconds"]:
                self._checkpoint(states, scales, done)
                self.lander.land(states, scales, done, batches, keep=True)
                last_checkpoint = last_landing = time.perf_counter()
                if self.checkpoint_seconds > 0:  # (0: every batch, as tests ask)
                    # Writing every layer's state and evidence takes seconds with many layers on a
                    # CPU: space checkpoints so that they cost at most a tenth of the pass.
                    interval["seconds"] = max(self.checkpoint_seconds, 9 * (last_checkpoint - now))
            elif self.land_seconds is not None and (
                last_landing is None or now - last_landing >= self.land_seconds
            ):
                self.lander.land(states, scales, done, batches, keep=False)
                last_landing = time.perf_counter()

        todo = [b for b in mine if b not in done]
        self.batches_short = sum(1 for b in todo if b in scaled)
        try:
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
                scale_known=scaled.__contains__,
            )
        except (ScanCancelled, KeyboardInterrupt):
            self._checkpoint(states, scales, done)
            self.lander.land(states, scales, done, batches, keep=True)
            self.listener(
                ActivationProgress(
                    "stopped", progress["tokens"], total, time.perf_counter() - run_started, resumed
                )
            )
            raise
        if todo:
            self._checkpoint(states, scales, done)

        self.listener(ActivationProgress("merging", progress["tokens"], total, start_tokens=resumed))
        merged = self._merge(states, scales, device)
        if not self.ranks.is_writer:
            distributed.barrier(self.ranks)
            self._forget_progress()
            return None
        results = self._finish(tokenized, merged, scales)
        self.lander.keep_scales(tokenized, batches, set(range(len(batches))), scales)
        distributed.barrier(self.ranks)
        self._forget_progress()
        self.listener(ActivationProgress("done", total, total, time.perf_counter() - started, resumed))
        return results

    def _lift_tokens(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each layer's promoted and suppressed token ids (its scan's), which the lift is measured on."""
        found = {}
        for layer in self.layers:
            scan = self.engine.layer(layer, self.scan, cancelled=self.cancelled)
            found[layer] = (scan.promote_ids.astype(np.int64), scan.suppress_ids.astype(np.int64))
        return found

    def _known_scales(
        self, tokenized: TokenizedCorpus, batches, mine: list[int], scales: np.ndarray
    ) -> set[int]:
        """The batches of this rank whose final-norm scales an earlier pass over the same windows
        kept (filled into ``scales``): their forward pass can stop after the deepest chosen layer."""
        known = self.store.scales(
            self.corpus.content_hash, self.settings.context, self.settings.windows_per_batch
        )
        if known is None:
            return set()
        windows, known_scales = known
        ours = np.asarray(tokenized.windows, dtype=np.int64).reshape(-1, 2)[: windows.shape[0]]
        same = (ours == windows[: ours.shape[0]]).all(axis=1)
        matching = int(same.shape[0] if same.all() else np.argmin(same))  # windows equal up to here
        found: set[int] = set()
        first_window = 0
        for number, batch in enumerate(batches):
            if first_window + len(batch) > matching:
                break
            if number in mine:
                start, stop = batch[0][0], batch[-1][1]
                if stop <= known_scales.shape[0]:
                    scales[start:stop] = known_scales[start:stop]
                    found.add(number)
            first_window += len(batch)
        return found

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

    def _finish(self, tokenized: TokenizedCorpus, states, scales: np.ndarray) -> dict[int, LayerActivations]:
        results = {}
        for layer, state in states.items():
            result = self.lander.evidence(layer, state, tokenized, scales)
            self.store.keep_evidence(self.corpus.content_hash, self.settings, self.scan, result)
            results[layer] = result
        self.store.remember_corpus(self.corpus.name, self.corpus.content_hash)
        return results

    # --- checkpoints --------------------------------------------------------------------------
    def _checkpoint(self, states, scales: np.ndarray, done: set[int]) -> None:
        if not self.store.keeps:
            return
        arrays: dict[str, np.ndarray] = {"done": np.array(sorted(done), dtype=np.int64), "scales": scales}
        for layer, state in states.items():
            for name, value in state.arrays().items():
                arrays[f"L{layer}_{name}"] = value
        self.store.keep_checkpoint(pack(arrays), *self.progress_address())

    def _resume(self, states, scales: np.ndarray) -> set[int]:
        blob = self.store.checkpoint(*self.progress_address())
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
            self.store.forget_checkpoint(*self.progress_address())
            for layer in states:  # a damaged checkpoint: start this rank afresh
                states[layer] = states[layer].fresh()
            scales[:] = 0.0
            return set()

    def _forget_progress(self) -> None:
        self.store.forget_checkpoint(*self.progress_address())


class _Lander:
    """Evidence of the tokens read so far. A single process reads its batches in order, so what it
    has read is the corpus's first N positions, and the evidence is exactly that of a pass capped
    at N tokens (a test holds it to the byte); with several processes only the end lands."""

    def __init__(self, job: ActivationJob, bridge, tokenized: TokenizedCorpus, total: int) -> None:
        from engine.sources.bridge_source import bridge_final_norm

        self.job, self.bridge, self.full, self.total = job, bridge, tokenized, total
        # The model's own W_U (a view on a CPU, transposed as the bridge shows it): a contiguous
        # copy would be a third unembedding beside the model's and the scan's.
        self.unembed = bridge.W_U.detach().to("cpu").float().numpy()
        final_norm = bridge_final_norm(bridge)
        self.norm_weight = None if final_norm is None else final_norm.scale
        self.centred = final_norm is not None and final_norm.centres
        self.forms = job.engine.token_forms(int(self.unembed.shape[1]))
        self._weights: dict[int, tuple] = {}  # per layer: the lift's tokens and the effect weights

    def layer_inputs(self, layer: int) -> tuple:
        if layer not in self._weights:
            promote_ids, suppress_ids = self.job.lift_tokens[layer]
            w_out = _numpy(self.bridge.blocks[layer].mlp.W_out)
            self._weights[layer] = (
                promote_ids,
                suppress_ids,
                direct_effect_weights(w_out, self.unembed, self.norm_weight, self.centred, promote_ids),
                direct_effect_weights(w_out, self.unembed, self.norm_weight, self.centred, suppress_ids),
            )
        return self._weights[layer]

    def evidence(
        self, layer: int, state: LayerActivationState, tokenized: TokenizedCorpus, scales: np.ndarray
    ) -> LayerActivations:
        facts = CorpusFacts(
            tokenized,
            scales[: tokenized.n_positions],
            tokenized.next_token_counts(int(self.unembed.shape[1])),
            self.forms,
        )
        settings = self.job.settings
        promote_ids, suppress_ids, promote_weights, suppress_weights = self.layer_inputs(layer)
        return layer_evidence(
            layer,
            state,
            ACT_TOP,
            facts,
            promote_ids,
            suppress_ids,
            promote_weights,
            suppress_weights,
            settings.examples,
            settings.lift_positions,
        )

    def read_prefix(self, done: set[int], batches) -> int:
        """Positions read in order from the start (0 with several processes)."""
        if self.job.ranks.world > 1:
            return 0
        count = 0
        while count in done:
            count += 1
        return batches[count - 1][-1][1] if count else 0

    def land(self, states, scales: np.ndarray, done: set[int], batches, keep: bool) -> None:
        n = self.read_prefix(done, batches)
        if n == 0:
            return
        tokenized = self.full.prefix(n)
        if keep:
            self.keep_scales(self.full, batches, done, scales)
        for layer, state in states.items():
            evidence = self.evidence(layer, state, tokenized, scales)
            reading = EvidenceReading(self.job.settings.max_tokens, n, self.total, n >= self.total)
            if keep and not reading.complete:
                job = self.job
                job.store.keep_partial(job.corpus.content_hash, job.settings, job.scan, evidence, self.total)
            if self.job.on_landed is not None:
                self.job.on_landed(layer, evidence, reading)

    def keep_scales(self, tokenized: TokenizedCorpus, batches, done: set[int], scales: np.ndarray) -> None:
        """The final-norm scales of the windows read in order, for later passes that stop early."""
        count = 0
        while count in done and count < len(batches):
            count += 1
        if count == 0 or self.job.ranks.world > 1 and count < len(batches):
            return
        windows = np.asarray([w for batch in batches[:count] for w in batch], dtype=np.int64)
        job = self.job
        job.store.keep_scales(
            job.corpus.content_hash,
            job.settings.context,
            job.settings.windows_per_batch,
            windows,
            scales[: int(windows[-1, 1])],
        )


def _numpy(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu").float().numpy())
