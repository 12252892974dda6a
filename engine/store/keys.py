"""Every key of the result cache, and the one rule for reading an entry: a value that does not
decode is dropped and read as a miss (it is then computed again).

Keys are ``v{schema}/{fingerprint}/...``: everything under one model's weights fingerprint, and
under a schema version that changes when a stored layout does. Nothing here imports torch: the
explorer reads layers and evidence from the cache on a warm start without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from engine.settings import SCHEMA_VERSION, ActivationSettings, ScanSettings
from engine.store.cache import ResultCache

T = TypeVar("T")
DECODE_ERRORS = (ValueError, KeyError, OSError, TypeError)  # what a damaged payload raises


def decoded(cache: ResultCache | None, key: str, decode: Callable[[bytes], T]) -> T | None:
    """The entry at ``key`` decoded, or None when it is missing or does not decode (then dropped)."""
    payload = cache.get(key) if cache else None
    if payload is None or cache is None:
        return None
    try:
        return decode(payload)
    except DECODE_ERRORS:
        cache.delete(key)
        return None


class CacheKeys:
    """The keys of one model (by weights fingerprint)."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def key(self, *parts: object) -> str:
        return "/".join([f"v{SCHEMA_VERSION}", self.fingerprint, *map(str, parts)])

    def info(self) -> str:
        return self.key("info")

    def vocabulary(self, vocabulary_fingerprint: str) -> str:
        return self.key("vocab", vocabulary_fingerprint)

    def layer(self, layer: int, settings: ScanSettings) -> str:
        return self.key("layer", settings.cache_tag, layer)

    def inputs(self, layer: int, top_k: int) -> str:
        """A layer's input side: the weights and k only (no projection applies to it)."""
        return self.key("inputs", f"i1-k{top_k}", layer)

    def diff(self, other_fingerprint: str, settings: ScanSettings, layer: int) -> str:
        """A layer's neuron-by-neuron diff against another checkpoint (engine.diff)."""
        return self.key("diff", "d1", other_fingerprint, settings.cache_tag, layer)

    def null(self, settings: ScanSettings, samples: int, seed: int) -> str:
        return self.key("null", settings.projection.label, settings.dtype, samples, seed)

    def evidence(self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int) -> str:
        return self.key("activations", corpus_hash, settings.cache_tag, scan.cache_tag, layer)

    def partial_evidence(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> str:
        """The evidence of the first tokens of a pass that has not read all it was set to."""
        return self.key("activations-partial", corpus_hash, settings.cache_tag, scan.cache_tag, layer)

    def evidence_readings(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> str:
        """Which token caps have evidence for this layer, and how much of each is read."""
        return self.key("activations-read", corpus_hash, settings.base_tag, scan.cache_tag, layer)

    def corpus_scales(self, corpus_hash: str, context: int, windows_per_batch: int) -> str:
        """The final norm's scale at every position of the first batches read (any layer's pass)."""
        return self.key("activation-scales", corpus_hash, f"c{context}-b{windows_per_batch}")

    def pass_progress(
        self, corpus_hash: str, settings: ActivationSettings, layers: list[int], rank: int, world: int
    ) -> str:
        joined = "-".join(map(str, layers))
        return self.key("activation-progress", corpus_hash, settings.cache_tag, joined, f"{rank}of{world}")

    def corpora(self) -> str:
        return self.key("activation-corpora")
