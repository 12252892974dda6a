"""Activation evidence in the result cache: each layer's evidence (finished, or the first tokens
of a pass still reading or stopped), which token caps hold some, a running pass's checkpoints, the
final norm's scales of the windows read, and the content hashes of corpora passed over by name."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np

from engine.evidence import EvidenceReading, LayerActivations
from engine.settings import ActivationSettings, ScanSettings
from engine.store.cache import ResultCache
from engine.store.keys import CacheKeys, decoded


class EvidenceStore:
    """Activation evidence in the result cache: each layer's evidence, a running pass's
    checkpoints, and the content hashes of corpora passed over, by name (so the explorer finds
    evidence of the embedded corpus without rebuilding it, which takes seconds)."""

    def __init__(self, cache: ResultCache | None, keys: CacheKeys) -> None:
        self.cache, self.keys = cache, keys

    def evidence(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> LayerActivations | None:
        key = self.keys.evidence(corpus_hash, settings, scan, layer)
        return decoded(self.cache, key, LayerActivations.from_bytes)

    def keep_evidence(
        self,
        corpus_hash: str,
        settings: ActivationSettings,
        scan: ScanSettings,
        evidence: LayerActivations,
    ) -> None:
        """A finished pass's evidence (it read all it was set to); any partial one it supersedes goes."""
        if self.cache:
            key = self.keys.evidence(corpus_hash, settings, scan, evidence.layer)
            self.cache.set(key, evidence.to_bytes())
            n = evidence.n_positions
            self._note_reading(
                corpus_hash, settings, scan, evidence.layer, EvidenceReading(settings.max_tokens, n, n, True)
            )
            self.cache.delete(self.keys.partial_evidence(corpus_hash, settings, scan, evidence.layer))

    def keep_partial(
        self,
        corpus_hash: str,
        settings: ActivationSettings,
        scan: ScanSettings,
        evidence: LayerActivations,
        of: int,
    ) -> None:
        """The evidence of the first ``evidence.n_positions`` of the ``of`` tokens a pass is set to
        read (it lands as the pass goes, and stays when it is stopped); never replaces more."""
        if not self.cache:
            return
        layer = evidence.layer
        known = {r.cap: r for r in self.readings(corpus_hash, settings, scan, layer)}.get(settings.max_tokens)
        if known is not None and (known.complete or known.read >= evidence.n_positions):
            return
        self.cache.set(self.keys.partial_evidence(corpus_hash, settings, scan, layer), evidence.to_bytes())
        reading = EvidenceReading(settings.max_tokens, evidence.n_positions, of, False)
        self._note_reading(corpus_hash, settings, scan, layer, reading)

    def readings(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> list[EvidenceReading]:
        """What the cache holds for this layer under any token cap (same windows and batches)."""
        if not self.cache:
            return []
        stored = self.cache.get_json(self.keys.evidence_readings(corpus_hash, settings, scan, layer))
        found = []
        for entry in stored.values() if isinstance(stored, dict) else ():
            try:
                cap = entry["cap"]
                found.append(
                    EvidenceReading(
                        None if cap is None else int(cap),
                        int(entry["read"]),
                        int(entry["of"]),
                        bool(entry["complete"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue  # a damaged index entry: the evidence itself is still found by its key
        return found

    def best_evidence(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> tuple[LayerActivations, EvidenceReading] | None:
        """The layer's evidence that has read the most tokens of this corpus (finished before
        partial at equal counts), with how much it read; the exact settings first when nothing
        reads more."""
        candidates = self.readings(corpus_hash, settings, scan, layer)
        exact = self.evidence(corpus_hash, settings, scan, layer)
        if exact is not None:
            n = exact.n_positions
            candidates.append(EvidenceReading(settings.max_tokens, n, n, True))
        for reading in sorted(
            candidates, key=lambda r: (-r.read, not r.complete, r.cap != settings.max_tokens)
        ):
            capped = replace(settings, max_tokens=reading.cap)
            if reading.complete:
                found = (
                    exact
                    if reading.cap == settings.max_tokens and exact is not None
                    else (self.evidence(corpus_hash, capped, scan, layer))
                )
            else:
                key = self.keys.partial_evidence(corpus_hash, capped, scan, layer)
                found = decoded(self.cache, key, LayerActivations.from_bytes)
            if found is not None and found.n_positions == reading.read:
                return found, reading
        return None

    def _note_reading(
        self,
        corpus_hash: str,
        settings: ActivationSettings,
        scan: ScanSettings,
        layer: int,
        reading: EvidenceReading,
    ) -> None:
        assert self.cache is not None
        key = self.keys.evidence_readings(corpus_hash, settings, scan, layer)
        stored = self.cache.get_json(key)
        known = dict(stored) if isinstance(stored, dict) else {}
        known[str(reading.cap)] = {
            "cap": reading.cap,
            "read": reading.read,
            "of": reading.of,
            "complete": reading.complete,
        }
        self.cache.set_json(key, known)

    def scales(
        self, corpus_hash: str, context: int, windows_per_batch: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(windows [n, 2], scales of their positions) known for this corpus, or None."""
        key = self.keys.corpus_scales(corpus_hash, context, windows_per_batch)

        def decode(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                windows, scales = archive["windows"], archive["scales"]
            if windows.ndim != 2 or windows.shape[1] != 2 or scales.dtype != np.float64:
                raise ValueError("not a scales entry")
            return windows, scales

        return decoded(self.cache, key, decode)

    def keep_scales(
        self, corpus_hash: str, context: int, windows_per_batch: int, windows: np.ndarray, scales: np.ndarray
    ) -> None:
        """Keep the scales of the first ``len(windows)`` windows unless more are known already."""
        if not self.cache:
            return
        known = self.scales(corpus_hash, context, windows_per_batch)
        if known is not None and known[0].shape[0] >= windows.shape[0]:
            return
        buffer = io.BytesIO()
        np.savez(buffer, windows=windows.astype(np.int64), scales=scales.astype(np.float64))
        self.cache.set(self.keys.corpus_scales(corpus_hash, context, windows_per_batch), buffer.getvalue())

    def checkpoint(self, key: str) -> bytes | None:
        return self.cache.get(key) if self.cache else None

    def keep_checkpoint(self, key: str, payload: bytes) -> None:
        if self.cache:
            self.cache.set(key, payload)

    def forget(self, key: str) -> None:
        if self.cache:
            self.cache.delete(key)

    def remember_corpus(self, name: str, content_hash: str) -> None:
        if self.cache:
            known = self.cache.get_json(self.keys.corpora()) or {}
            if known.get(name) != content_hash:
                self.cache.set_json(self.keys.corpora(), {**known, name: content_hash})

    def known_corpus_hash(self, name: str) -> str | None:
        if not self.cache:
            return None
        known = self.cache.get_json(self.keys.corpora()) or {}
        value = known.get(name)
        return value if isinstance(value, str) else None
