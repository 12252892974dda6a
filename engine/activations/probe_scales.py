"""Which scale a text probe ranks by (``engine.data.neuron_scale``): each neuron's corpus quantile
when the cache holds evidence of a corpus pass for every probed layer, else the probe text's own.

One scale for the whole ranking: layers with evidence and layers without would rank on different
yardsticks, so one layer without evidence sends every layer to the text's scale (and the header
says how many had evidence). A layer's scales are kept in memory by how many tokens its evidence
has read: evidence is large (megabytes per layer) and a probe of every layer would otherwise read
all of it again each time; evidence that has read more replaces them.
"""

from __future__ import annotations

import threading

import numpy as np

from engine.data.neuron_scale import SCALE_QUANTILE, NeuronScales, corpus_scale
from engine.settings import ActivationSettings, ScanSettings
from engine.store.evidence_store import EvidenceStore

_PERCENT = f"{SCALE_QUANTILE:.0%}".rstrip("%")  # "99"


class ProbeScales:
    def __init__(self, store: EvidenceStore) -> None:
        self.store = store
        self._kept: dict[tuple, tuple[int, np.ndarray]] = {}  # key -> (positions read, scales)
        self._lock = threading.Lock()

    def read(self, layer: int, corpus_hash: str, activation: ActivationSettings, scan: ScanSettings) -> int:
        """How many tokens the layer's evidence that has read the most has read (0: none), from
        the cache's index alone."""
        return max((r.read for r in self.store.readings(corpus_hash, activation, scan, layer)), default=0)

    def layer_scale(
        self, layer: int, corpus_hash: str, activation: ActivationSettings, scan: ScanSettings
    ) -> tuple[int, np.ndarray] | None:
        """(tokens read, [d_mlp] scales) from the evidence that has read the most, or None."""
        key = (corpus_hash, activation.base_tag, scan.cache_tag, layer)
        read = self.read(layer, corpus_hash, activation, scan)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] >= read:
            return kept
        found = self.store.best_evidence(corpus_hash, activation, scan, layer)
        if found is None:
            return None
        evidence, reading = found
        kept = (reading.read, corpus_scale(evidence))
        with self._lock:
            self._kept[key] = kept
        return kept

    def for_layers(
        self,
        layers: list[int],
        corpus_hash: str | None,
        corpus_name: str,
        activation: ActivationSettings,
        scan: ScanSettings,
    ) -> NeuronScales:
        if corpus_hash is None:
            return NeuronScales("text", _text_words(layers, 0))
        with_evidence = sum(self.read(layer, corpus_hash, activation, scan) > 0 for layer in layers)
        found: dict[int, tuple[int, np.ndarray]] = {}
        for layer in layers if with_evidence == len(layers) else ():
            scale = self.layer_scale(layer, corpus_hash, activation, scan)
            if scale is None:
                return NeuronScales("text", _text_words(layers, len(found)))
            found[layer] = scale
        if not found:
            return NeuronScales("text", _text_words(layers, with_evidence))
        reads = sorted({read for read, _ in found.values()})
        tokens = f"{reads[0]:,}" if len(reads) == 1 else f"{reads[0]:,} to {reads[-1]:,}"
        words = (
            f"ranked by activation ÷ the neuron's {_PERCENT}th percentile of |activation| on "
            f"{corpus_name} ({tokens} tokens read)"
        )
        return NeuronScales("corpus", words, {layer: scale for layer, (_, scale) in found.items()})


def _text_words(layers: list[int], with_evidence: int) -> str:
    """Why the text's scale: ``with_evidence`` layers, in order, had corpus evidence."""
    if len(layers) == 1:
        why = f"no corpus evidence for L{layers[0]} yet: a pass (A) gives each neuron its corpus scale"
    else:
        why = (
            f"corpus evidence for {with_evidence} of {len(layers)} layers: "
            "a pass over all layers (A) gives each neuron its corpus scale"
        )
    scale = "the neuron's RMS on the rest of this text, at least the layer's median"
    return f"ranked by activation ÷ {scale} ({why})"
