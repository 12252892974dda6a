"""Activation evidence in the result cache: each layer's evidence (finished, or the first tokens
of a pass still reading or stopped), which token caps hold some, a running pass's checkpoints, the
final norm's scales of the windows read, and the content hashes of corpora passed over by name."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.data.evidence import EvidenceReading, LayerActivations
from engine.settings import ActivationSettings, ScanSettings
from engine.store.products import (
    CORPORA,
    EVIDENCE,
    PARTIAL_EVIDENCE,
    PASS_INDEX,
    PASS_PROGRESS,
    READINGS,
    SCALES,
    ProductStore,
)


class EvidenceStore:
    """Activation evidence in the result cache: each layer's evidence, a running pass's
    checkpoints, and the content hashes of corpora passed over, by name (so the explorer finds
    evidence of the embedded corpus without rebuilding it, which takes seconds)."""

    def __init__(self, products: ProductStore) -> None:
        self.products = products

    @property
    def keeps(self) -> bool:
        """Whether anything is kept (no cache: checkpoints are not written either)."""
        return self.products.cache is not None

    def evidence(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> LayerActivations | None:
        return self.products.get(EVIDENCE, corpus_hash, settings, scan, layer)

    def forget_evidence(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> None:
        """Drop a layer's evidence under these settings and the index of what was read (the
        scales of the windows stay: they serve every layer)."""
        self.products.forget(EVIDENCE, corpus_hash, settings, scan, layer)
        self.products.forget(PARTIAL_EVIDENCE, corpus_hash, settings, scan, layer)
        self.products.forget(READINGS, corpus_hash, settings, scan, layer)

    def keep_evidence(
        self,
        corpus_hash: str,
        settings: ActivationSettings,
        scan: ScanSettings,
        evidence: LayerActivations,
    ) -> None:
        """A finished pass's evidence (it read all it was set to); any partial one it supersedes goes."""
        if self.keeps:
            self.products.put(EVIDENCE, evidence, corpus_hash, settings, scan, evidence.layer)
            n = evidence.n_positions
            self._note_reading(
                corpus_hash, settings, scan, evidence.layer, EvidenceReading(settings.max_tokens, n, n, True)
            )
            self.products.forget(PARTIAL_EVIDENCE, corpus_hash, settings, scan, evidence.layer)

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
        if not self.keeps:
            return
        layer = evidence.layer
        known = {r.cap: r for r in self.readings(corpus_hash, settings, scan, layer)}.get(settings.max_tokens)
        if known is not None and (known.complete or known.read >= evidence.n_positions):
            return
        self.products.put(PARTIAL_EVIDENCE, evidence, corpus_hash, settings, scan, layer)
        reading = EvidenceReading(settings.max_tokens, evidence.n_positions, of, False)
        self._note_reading(corpus_hash, settings, scan, layer, reading)

    def readings(
        self, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
    ) -> list[EvidenceReading]:
        """What the cache holds for this layer under any token cap (same windows and batches)."""
        stored = self.products.get(READINGS, corpus_hash, settings, scan, layer)
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
                found = self.products.get(PARTIAL_EVIDENCE, corpus_hash, capped, scan, layer)
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
        stored = self.products.get(READINGS, corpus_hash, settings, scan, layer)
        known = dict(stored) if isinstance(stored, dict) else {}
        known[str(reading.cap)] = {
            "cap": reading.cap,
            "read": reading.read,
            "of": reading.of,
            "complete": reading.complete,
        }
        self.products.put(READINGS, known, corpus_hash, settings, scan, layer)

    def scales(
        self, corpus_hash: str, context: int, windows_per_batch: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(windows [n, 2], the final norm's scales and predicted tokens at their positions)
        known for this corpus, or None."""
        return self.products.get(SCALES, corpus_hash, context, windows_per_batch)

    def keep_scales(
        self,
        corpus_hash: str,
        context: int,
        windows_per_batch: int,
        windows: np.ndarray,
        scales: np.ndarray,
        predicted: np.ndarray,
    ) -> None:
        """Keep the readouts of the first ``len(windows)`` windows unless more are known already."""
        if not self.keeps:
            return
        known = self.scales(corpus_hash, context, windows_per_batch)
        if known is not None and known[0].shape[0] >= windows.shape[0]:
            return
        self.products.put(SCALES, (windows, scales, predicted), corpus_hash, context, windows_per_batch)

    # --- a running pass's checkpoints ----------------------------------------------------------
    def checkpoint(
        self, corpus_hash: str, settings: ActivationSettings, layers: list[int], rank: int, world: int
    ) -> bytes | None:
        """A running pass's last checkpoint (per rank), or None."""
        return self.products.get(PASS_PROGRESS, corpus_hash, settings, layers, rank, world)

    def keep_checkpoint(
        self,
        payload: bytes,
        corpus_hash: str,
        settings: ActivationSettings,
        layers: list[int],
        rank: int,
        world: int,
        read: int,
    ) -> None:
        """A pass's checkpoint, which has read ``read`` tokens (this rank's), noted in the index that
        passes under other token caps or over fewer layers look in."""
        self.products.put(PASS_PROGRESS, payload, corpus_hash, settings, layers, rank, world)
        known = self._checkpoints(corpus_hash, settings, rank, world)
        known[_checkpoint_name(settings, layers)] = {
            "cap": settings.max_tokens,
            "layers": layers,
            "read": read,
        }
        self.products.put(PASS_INDEX, known, corpus_hash, settings, rank, world)

    def forget_checkpoint(
        self, corpus_hash: str, settings: ActivationSettings, layers: list[int], rank: int, world: int
    ) -> None:
        self.products.forget(PASS_PROGRESS, corpus_hash, settings, layers, rank, world)
        known = self._checkpoints(corpus_hash, settings, rank, world)
        if known.pop(_checkpoint_name(settings, layers), None) is not None:
            self.products.put(PASS_INDEX, known, corpus_hash, settings, rank, world)

    def resumable(
        self, corpus_hash: str, settings: ActivationSettings, layers: list[int], rank: int, world: int
    ) -> list[tuple[ActivationSettings, list[int]]]:
        """The passes whose checkpoints a pass with ``settings`` over ``layers`` may resume from,
        the one that read most first: its own, and those of passes over the same corpus, windows
        and batches (``ActivationSettings.base_tag``) under any token cap, that read no more than
        this pass's cap, over the same layers or more (a layer's state depends only on the batches
        read, not on the other layers read beside it). A pass over more layers than a checkpoint
        holds cannot use it: its other layers need those batches read again, which costs what
        reading them for every layer costs. Whether the batches read are this pass's own is
        checked against the checkpoint itself (its windows)."""
        cap, own_name = settings.max_tokens, _checkpoint_name(settings, layers)
        known = self._checkpoints(corpus_hash, settings, rank, world)
        own = known.get(own_name)
        own_read = own.get("read") if isinstance(own, dict) else None
        # Its own first (read unknown: a damaged or older index; try it first), then the others.
        found = [(float(own_read) if isinstance(own_read, int) else np.inf, settings, layers)]
        for name, entry in known.items():
            try:
                their_cap = None if entry["cap"] is None else int(entry["cap"])
                their_layers, read = [int(layer) for layer in entry["layers"]], int(entry["read"])
            except (KeyError, TypeError, ValueError):
                continue  # a damaged index entry: its checkpoint is still found by its own key
            if name != own_name and (cap is None or read <= cap) and set(layers) <= set(their_layers):
                found.append((read, replace(settings, max_tokens=their_cap), their_layers))
        found.sort(key=lambda item: -item[0])  # stable: its own first at equal counts
        return [(their_settings, their_layers) for _, their_settings, their_layers in found]

    def _checkpoints(self, corpus_hash: str, settings: ActivationSettings, rank: int, world: int) -> dict:
        stored = self.products.get(PASS_INDEX, corpus_hash, settings, rank, world)
        return dict(stored) if isinstance(stored, dict) else {}

    def remember_corpus(self, name: str, content_hash: str) -> None:
        known = self._corpora()
        if self.keeps and known.get(name) != content_hash:
            self.products.put(CORPORA, {**known, name: content_hash})

    def known_corpus_hash(self, name: str) -> str | None:
        value = self._corpora().get(name)
        return value if isinstance(value, str) else None

    def _corpora(self) -> dict:
        known = self.products.get(CORPORA)
        return known if isinstance(known, dict) else {}


def _checkpoint_name(settings: ActivationSettings, layers: list[int]) -> str:
    """A checkpoint's name in the index: its token cap and its layers."""
    return f"m{settings.max_tokens}-L{'-'.join(map(str, layers))}"
