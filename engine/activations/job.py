"""The activation pass as a job: cache lookup, tokenizing, the pass over this rank's batches with
checkpoints, the exact merge across ranks, and the evidence that rank 0 writes.

Cache entries (bytes, never pickles): each layer's evidence under the model fingerprint, the
corpus content hash, the activation settings and the scan settings; while a pass runs, each rank's
progress (finished batches and per-neuron state) under the same corpus and settings, so a killed
pass resumes from its last checkpoint; so does a pass under another token cap or over fewer of the
layers, when the batches that checkpoint read are its own (engine.activations.checkpoints).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from engine.activations import checkpoints
from engine.activations.documents import AnyCorpus
from engine.activations.final_readout import Readouts
from engine.activations.landing import Lander
from engine.activations.state import LayerActivationState
from engine.activations.windows import TokenizedCorpus, tokenize_corpus
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.model import ModelInfo
from engine.data.progress import ActivationListener, ActivationProgress, ProgressListener
from engine.data.results import LayerResult
from engine.dictionaries.encoder import Encoder
from engine.dictionaries.shelf import DictionarySet
from engine.errors import ScanCancelled
from engine.runtime import distributed
from engine.runtime.ranks import SINGLE, Ranks
from engine.settings import ActivationSettings, ScanSettings, Units
from engine.store.evidence_store import EvidenceStore


class JobHost(Protocol):
    """What the job needs of the engine that runs it (``NeuronEngine`` is one): the model to run,
    the device of a rank, the lock that keeps forward passes apart, a layer's scan (the lift's
    tokens), each token's normalised form and where evidence is kept."""

    run_lock: threading.Lock
    evidence_store: EvidenceStore

    @property
    def info(self) -> ModelInfo:
        """The model's shapes (each layer's width, its experts)."""
        ...

    def rank_device(self, ranks: Ranks) -> torch.device: ...

    def activation_model(self, ranks: Ranks | None = None) -> tuple: ...

    def layer(
        self,
        layer: int,
        settings: ScanSettings,
        listener: ProgressListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> LayerResult: ...

    def token_forms(self, size: int) -> np.ndarray: ...

    def dictionary_set(self, units: Units) -> DictionarySet | None: ...


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
        self.encoders: dict[int, Encoder] = {}  # a dictionary's layers, built with the model

    # --- the pass's place in the cache ---------------------------------------------------------
    def progress_address(self) -> tuple[str, ActivationSettings, list[int], int, int]:
        """Where this rank's checkpoints of this pass are kept."""
        corpus = self.corpus.content_hash
        if self.scan.units.digest is not None:  # a dictionary's pass keeps its own checkpoints
            corpus = f"{corpus}-dict{self.scan.units.digest[:32]}"
        return corpus, self.settings, self.layers, self.ranks.rank, self.ranks.world

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

        reading = self._prepare()
        self._read(reading)
        self.listener(
            ActivationProgress("merging", reading.tokens, reading.total, start_tokens=reading.resumed)
        )
        merged = self._merge(reading.states, reading.readouts, reading.device)
        if not self.ranks.is_writer:
            distributed.barrier(self.ranks)
            self._forget_progress()
            return None
        results = self._finish(reading.tokenized, merged, reading.readouts)
        every = set(range(len(reading.batches)))
        self.lander.keep_scales(reading.tokenized, reading.batches, every, reading.readouts)
        distributed.barrier(self.ranks)
        self._forget_progress()
        seconds = time.perf_counter() - started
        self.listener(ActivationProgress("done", reading.total, reading.total, seconds, reading.resumed))
        return results

    def _prepare(self) -> _Reading:
        """Load the model, tokenize the corpus, and resume from the best checkpoint there is."""
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
        dictionaries = self.engine.dictionary_set(self.scan.units)
        if dictionaries is not None:
            self.encoders = {layer: Encoder(dictionaries.at(layer), device) for layer in self.layers}
        states = {layer: self._state(layer, bridge, device) for layer in self.layers}
        readouts = Readouts.empty(tokenized.n_positions)
        batches = tokenized.batches(self.settings.windows_per_batch)
        mine = [b for b in range(len(batches)) if self.ranks.owns(b)]
        done = checkpoints.resume(self.store, self.progress_address(), states, readouts, batches)
        scaled = self._known_scales(tokenized, batches, mine, readouts)
        total = sum(stop - start for b in mine for start, stop in batches[b])
        resumed = sum(stop - start for b in done for start, stop in batches[b])
        self.lander = Lander(self, bridge, tokenized, total)
        if resumed:
            self.listener(ActivationProgress("resuming", resumed, total, start_tokens=resumed))
        return _Reading(
            bridge, device, tokenized, batches, states, readouts, mine, done, scaled, total, resumed
        )

    def _state(self, layer: int, bridge, device: torch.device) -> LayerActivationState:
        from engine.activations.forward_pass import is_gated

        info, keep, examples = self.engine.info, self.settings.keep, self.settings.examples
        encoder = self.encoders.get(layer)
        if encoder is not None:  # a dictionary's features, and the width of what it reconstructs
            dictionary = encoder.dictionary
            width = next(iter(dictionary.W_dec.values())).shape[1]
            return LayerActivationState(dictionary.info.d_sae, keep, examples, False, device, fit_width=width)
        experts = info.experts(layer)  # a layer of experts: read at its experts (expert_pass)
        gated = experts is None and is_gated(bridge, layer)
        return LayerActivationState(info.width(layer), keep, examples, gated, device, experts)

    def _read(self, reading: _Reading) -> None:
        """Run this rank's batches not read yet, with checkpoints and landings; stopped, keep a
        checkpoint, land what was read and raise."""
        from engine.activations.forward_pass import run_batches

        todo = [b for b in reading.mine if b not in reading.done]
        self.batches_short = sum(1 for b in todo if b in reading.scaled)
        clock = _Clock(self.checkpoint_seconds, self.land_seconds)
        try:
            run_batches(
                reading.bridge,
                reading.tokenized,
                reading.batches,
                todo,
                reading.states,
                reading.readouts.scales,
                reading.readouts.predicted,
                reading.device,
                lambda number, tokens: self._after_batch(reading, clock, number, tokens),
                self.cancelled,
                run_lock=self.engine.run_lock,
                scale_known=reading.scaled.__contains__,
                encoders=self.encoders,
            )
        except (ScanCancelled, KeyboardInterrupt):
            self._checkpoint(reading)
            self.lander.land(reading.states, reading.readouts, reading.done, reading.batches, keep=True)
            seconds = time.perf_counter() - clock.started
            self.listener(
                ActivationProgress("stopped", reading.tokens, reading.total, seconds, reading.resumed)
            )
            raise
        if todo:
            self._checkpoint(reading)

    def _after_batch(self, reading: _Reading, clock: _Clock, number: int, tokens: int) -> None:
        """A batch is read: say so, and keep a checkpoint or land the evidence when it is time."""
        reading.done.add(number)
        self.batches_run += 1
        reading.tokens += tokens
        now = time.perf_counter()
        seconds = now - clock.started
        self.listener(ActivationProgress("running", reading.tokens, reading.total, seconds, reading.resumed))
        if clock.checkpoint_due(now):
            self._checkpoint(reading)
            self.lander.land(reading.states, reading.readouts, reading.done, reading.batches, keep=True)
            clock.checkpointed(now)
        elif clock.landing_due(now):
            self.lander.land(reading.states, reading.readouts, reading.done, reading.batches, keep=False)
            clock.landed()

    def _lift_tokens(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each layer's promoted and suppressed token ids (its scan's), which the lift is measured on."""
        found = {}
        for layer in self.layers:
            scan = self.engine.layer(layer, self.scan, cancelled=self.cancelled)
            found[layer] = (scan.promote_ids.astype(np.int64), scan.suppress_ids.astype(np.int64))
        return found

    def _known_scales(
        self, tokenized: TokenizedCorpus, batches, mine: list[int], readouts: Readouts
    ) -> set[int]:
        """The batches of this rank whose final-norm readouts an earlier pass over the same
        windows kept (filled into ``readouts``): their forward pass can stop after the deepest
        chosen layer."""
        known = self.store.scales(
            self.corpus.content_hash, self.settings.context, self.settings.windows_per_batch
        )
        if known is None:
            return set()
        windows, known_scales, known_predicted = known
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
                    readouts.fill(start, stop, known_scales, known_predicted)
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

    def _merge(self, states, readouts: Readouts, device) -> dict[int, LayerActivationState]:
        """Every rank's state folded into one (exact: see engine.activations.state)."""
        if self.ranks.world > 1:
            for part in (readouts.scales, readouts.predicted):  # each position is read on one rank
                part[:] = distributed.sum_all(torch.from_numpy(part).to(device), self.ranks).cpu().numpy()
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

    def _finish(self, tokenized: TokenizedCorpus, states, readouts: Readouts) -> dict[int, LayerActivations]:
        results = {}
        for layer, state in states.items():
            result = self.lander.evidence(layer, state, tokenized, readouts.scales)
            self.store.keep_evidence(self.corpus.content_hash, self.settings, self.scan, result)
            results[layer] = result
        self.store.remember_corpus(self.corpus.name, self.corpus.content_hash)
        return results

    # --- checkpoints (engine.activations.checkpoints) ------------------------------------------
    def _checkpoint(self, reading: _Reading) -> None:
        checkpoints.keep(
            self.store,
            self.progress_address(),
            reading.states,
            reading.readouts,
            reading.done,
            reading.batches,
        )

    def _forget_progress(self) -> None:
        self.store.forget_checkpoint(*self.progress_address())


@dataclass
class _Reading:
    """One run of a pass on this rank: what it reads, its state, and how far it got."""

    bridge: Any
    device: torch.device
    tokenized: TokenizedCorpus
    batches: list[list[tuple[int, int]]]
    states: dict[int, LayerActivationState]
    readouts: Readouts  # the final norm's scale and the predicted token at every position read
    mine: list[int]  # this rank's batches
    done: set[int]  # of them, those read (this run or before)
    scaled: set[int]  # of them, those whose readouts are known: their forward stops early
    total: int  # tokens of this rank's batches
    resumed: int  # tokens read before this run
    tokens: int = field(init=False)  # tokens read so far, this run and before

    def __post_init__(self) -> None:
        self.tokens = self.resumed


class _Clock:
    """When a running pass keeps a checkpoint (which lands the evidence too) and when it only lands
    it: every ``checkpoint_seconds`` (0: after every batch, as tests ask), spaced so that writing
    checkpoints costs at most a tenth of the pass, and every ``land_seconds`` between them."""

    def __init__(self, checkpoint_seconds: float, land_seconds: float | None) -> None:
        self.started = self.last_checkpoint = time.perf_counter()
        self.interval, self.floor = checkpoint_seconds, checkpoint_seconds
        self.land_seconds = land_seconds
        self.last_landing: float | None = None

    def checkpoint_due(self, now: float) -> bool:
        return now - self.last_checkpoint >= self.interval

    def checkpointed(self, began: float) -> None:
        self.last_checkpoint = self.last_landing = time.perf_counter()
        if self.floor > 0:
            # Writing every layer's state and evidence takes seconds with many layers on a CPU.
            self.interval = max(self.floor, 9 * (self.last_checkpoint - began))

    def landing_due(self, now: float) -> bool:
        if self.land_seconds is None:
            return False
        return self.last_landing is None or now - self.last_landing >= self.land_seconds

    def landed(self) -> None:
        self.last_landing = time.perf_counter()
