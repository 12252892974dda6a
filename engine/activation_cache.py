"""Where activation evidence lives in the result cache, read without torch: the explorer looks
evidence up as it opens a layer, and a warm start must not import torch for that."""

from __future__ import annotations

from engine.activation_evidence import LayerActivations
from engine.activation_windows import ActivationSettings
from engine.corpus import AnyCorpus
from engine.settings import ScanSettings


def evidence_key(
    engine, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
) -> str:
    return engine._key("activations", corpus_hash, settings.cache_tag, scan.cache_tag, layer)


def cached_evidence(
    engine, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
) -> LayerActivations | None:
    """A layer's evidence from the cache (a damaged entry is dropped), without the corpus text."""
    cache = engine.cache
    key = evidence_key(engine, corpus_hash, settings, scan, layer)
    blob = cache.get(key) if cache else None
    if blob is None:
        return None
    try:
        return LayerActivations.from_bytes(blob)
    except (ValueError, KeyError, OSError, TypeError):
        cache.delete(key)
        return None


def remember_corpus(engine, corpus: AnyCorpus) -> None:
    """Note the corpus's content hash under its name, so that the explorer can find evidence for
    the embedded corpus without rebuilding it (seconds) at every start."""
    if engine.cache:
        known = engine.cache.get_json(engine._key("activation-corpora")) or {}
        if known.get(corpus.name) != corpus.content_hash:
            engine.cache.set_json(
                engine._key("activation-corpora"), {**known, corpus.name: corpus.content_hash}
            )


def known_corpus_hash(engine, name: str) -> str | None:
    if not engine.cache:
        return None
    known = engine.cache.get_json(engine._key("activation-corpora")) or {}
    value = known.get(name)
    return value if isinstance(value, str) else None
