"""The evidence of the tokens a running pass has read so far, as it lands (engine.activations.job)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from engine.activations.documents import AnyCorpus
from engine.activations.evidence import CorpusFacts, direct_effect_weights, layer_evidence
from engine.activations.expert_pass import layer_w_out
from engine.activations.final_readout import Readouts
from engine.activations.state import ACT_TOP, LayerActivationState
from engine.activations.windows import TokenizedCorpus
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.model import ModelInfo
from engine.dictionaries.encoder import Encoder
from engine.runtime.ranks import Ranks
from engine.settings import ActivationSettings, ScanSettings
from engine.store.evidence_store import EvidenceStore


class FormsHost(Protocol):
    def token_forms(self, size: int) -> np.ndarray: ...

    @property
    def info(self) -> ModelInfo: ...


class LandingJob(Protocol):
    """What the lander reads of the pass it lands for (``ActivationJob`` is one)."""

    @property
    def engine(self) -> FormsHost: ...

    corpus: AnyCorpus
    settings: ActivationSettings
    scan: ScanSettings
    ranks: Ranks
    store: EvidenceStore
    lift_tokens: dict[int, tuple[np.ndarray, np.ndarray]]
    on_landed: Callable[[int, LayerActivations, EvidenceReading], None] | None
    encoders: dict[int, Encoder]  # a dictionary's layers (engine.dictionaries.encoder)


class Lander:
    """Evidence of the tokens read so far. A single process reads its batches in order, so what it
    has read is the corpus's first N positions, and the evidence is exactly that of a pass capped
    at N tokens (a test holds it to the byte); with several processes only the end lands."""

    def __init__(self, job: LandingJob, bridge, tokenized: TokenizedCorpus, total: int) -> None:
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
            encoder = self.job.encoders.get(layer)
            if encoder is not None:  # a dictionary's features: what a unit of activation writes
                w_out = encoder.directions.float().cpu().numpy()
            else:
                w_out = _numpy(layer_w_out(self.bridge, layer, self.job.engine.info.experts(layer)))
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

    def land(self, states, readouts: Readouts, done: set[int], batches, keep: bool) -> None:
        n = self.read_prefix(done, batches)
        if n == 0:
            return
        tokenized = self.full.prefix(n)
        if keep:
            self.keep_scales(self.full, batches, done, readouts)
        for layer, state in states.items():
            evidence = self.evidence(layer, state, tokenized, readouts.scales)
            reading = EvidenceReading(self.job.settings.max_tokens, n, self.total, n >= self.total)
            if keep and not reading.complete:
                job = self.job
                job.store.keep_partial(job.corpus.content_hash, job.settings, job.scan, evidence, self.total)
            if self.job.on_landed is not None:
                self.job.on_landed(layer, evidence, reading)

    def keep_scales(self, tokenized: TokenizedCorpus, batches, done: set[int], readouts: Readouts) -> None:
        """The final-norm readouts of the windows read in order, for later passes that stop early."""
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
            readouts.scales[: int(windows[-1, 1])],
            readouts.predicted[: int(windows[-1, 1])],
        )


def _numpy(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu").float().numpy())
