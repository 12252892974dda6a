"""Every product the result cache keeps, declared once: its key, how it is written, how it is read.

A key is ``v{schema}/{fingerprint}/{name}/{parts...}``: everything under one model's weights
fingerprint and a schema version that changes when a stored layout does. Reading follows one rule,
kept in ``ProductStore.get``: a value that does not decode, or that is not the one asked for, is
dropped and read as a miss (it is then computed again). Nothing here imports torch: the explorer
reads layers and evidence on a warm start without it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

import numpy as np

from engine.data.diff import LayerDiff
from engine.data.evidence import LayerActivations
from engine.data.inputs import LayerInputs
from engine.data.model import ModelInfo
from engine.data.null import NULL_SAMPLES, NULL_SEED
from engine.data.results import LayerResult
from engine.data.routing import LayerRouting
from engine.data.tokens import Vocabulary
from engine.settings import SCHEMA_VERSION, ActivationSettings, ScanSettings
from engine.store.cache import ResultCache

P = ParamSpec("P")
T = TypeVar("T")
DECODE_ERRORS = (ValueError, KeyError, OSError, TypeError)  # what a damaged payload raises


@dataclass(frozen=True)
class Product(Generic[P, T]):
    """One kind of cached value. ``parts`` turns a request's arguments into the key's parts after
    the name; ``matches(value, *args)`` says whether a decoded value is the one asked for."""

    name: str
    parts: Callable[P, tuple[object, ...]]
    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]
    matches: Callable[..., bool] | None = None
    per_model: bool = True  # False: shared by every model (its key carries neither schema nor model)


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode("utf-8")


def _json_decode(payload: bytes) -> Any:
    return json.loads(payload.decode("utf-8"))  # UnicodeDecodeError and JSONDecodeError are ValueErrors


def _vocabulary_to_bytes(vocab: Vocabulary) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, data=vocab.data, offsets=vocab.offsets)
    return buffer.getvalue()


def _vocabulary_from_bytes(payload: bytes) -> Vocabulary:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return Vocabulary(data=archive["data"], offsets=archive["offsets"])


def _null_from_bytes(payload: bytes) -> np.ndarray:
    if len(payload) != 8 * NULL_SAMPLES:
        raise ValueError("a null baseline of another size")
    return np.frombuffer(payload, dtype="<f8").copy()


# (windows [n, 2], the final norm's scale and the predicted token at their positions)
Scales = tuple[np.ndarray, np.ndarray, np.ndarray]


def _scales_to_bytes(found: Scales) -> bytes:
    buffer = io.BytesIO()
    windows, scales, predicted = found
    np.savez(
        buffer,
        windows=windows.astype(np.int64),
        scales=scales.astype(np.float64),
        predicted=predicted.astype(np.int64),
    )
    return buffer.getvalue()


def _scales_from_bytes(payload: bytes) -> Scales:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        windows, scales, predicted = archive["windows"], archive["scales"], archive["predicted"]
    if windows.ndim != 2 or windows.shape[1] != 2 or scales.dtype != np.float64:
        raise ValueError("not a scales entry")
    if predicted.shape != scales.shape or predicted.dtype != np.int64:
        raise ValueError("not a scales entry")
    return windows, scales, predicted


def _evidence_parts(
    corpus_hash: str, settings: ActivationSettings, scan: ScanSettings, layer: int
) -> tuple[object, ...]:
    return corpus_hash, settings.cache_tag, scan.cache_tag, layer


def _layer_matches(result: LayerResult, layer: int, settings: ScanSettings) -> bool:
    return result.layer == layer


def _info_from_bytes(payload: bytes) -> ModelInfo:
    return ModelInfo.from_dict(_json_decode(payload))


INFO: Product[[], ModelInfo] = Product(
    "info", lambda: (), lambda info: _json_encode(info.to_dict()), _info_from_bytes
)
VOCABULARY: Product[[str], Vocabulary] = Product(
    # Keyed by the tokenizer files, not the weights: the same weights beside another tokenizer
    # must not show the first one's strings.
    "vocab",
    lambda vocabulary_fingerprint: (vocabulary_fingerprint,),
    _vocabulary_to_bytes,
    _vocabulary_from_bytes,
)
LAYER: Product[[int, ScanSettings], LayerResult] = Product(
    "layer",
    lambda layer, settings: (settings.cache_tag, layer),
    LayerResult.to_bytes,
    LayerResult.from_bytes,
    _layer_matches,
)
INPUTS: Product[[int, int], LayerInputs] = Product(
    # A layer's input side: the weights and k only (no projection applies to it).
    "inputs",
    lambda layer, top_k: (f"i1-k{top_k}", layer),
    LayerInputs.to_bytes,
    LayerInputs.from_bytes,
)
ROUTING: Product[[int, int], LayerRouting] = Product(
    # A layer of experts' router against the vocabulary (engine.data.routing): weights only.
    "routing",
    lambda layer, top: (f"r1-k{top}", layer),
    LayerRouting.to_bytes,
    LayerRouting.from_bytes,
)
DIFF: Product[[str, ScanSettings, int], LayerDiff] = Product(
    # A layer's neuron-by-neuron diff against another checkpoint (its weights fingerprint).
    "diff",
    lambda other, settings, layer: ("d1", other, settings.cache_tag, layer),
    LayerDiff.to_bytes,
    LayerDiff.from_bytes,
)
NULL: Product[[ScanSettings], np.ndarray] = Product(
    "null",
    lambda settings: (settings.projection.label, settings.dtype, NULL_SAMPLES, NULL_SEED),
    lambda values: values.astype("<f8").tobytes(),
    _null_from_bytes,
)
EVIDENCE: Product[[str, ActivationSettings, ScanSettings, int], LayerActivations] = Product(
    # A finished pass's evidence of one layer.
    "activations",
    _evidence_parts,
    LayerActivations.to_bytes,
    LayerActivations.from_bytes,
)
PARTIAL_EVIDENCE: Product[[str, ActivationSettings, ScanSettings, int], LayerActivations] = Product(
    # The evidence of the first tokens of a pass that has not read all it was set to.
    "activations-partial",
    _evidence_parts,
    LayerActivations.to_bytes,
    LayerActivations.from_bytes,
)
READINGS: Product[[str, ActivationSettings, ScanSettings, int], dict] = Product(
    # Which token caps have evidence for a layer, and how much of each is read.
    "activations-read",
    lambda corpus_hash, settings, scan, layer: (corpus_hash, settings.base_tag, scan.cache_tag, layer),
    _json_encode,
    _json_decode,
)
SCALES: Product[[str, int, int], Scales] = Product(
    # The final norm's scale and the predicted token at every position of the first batches read
    # (any layer's pass); r2: with the predicted token.
    "activation-scales",
    lambda corpus_hash, context, windows_per_batch: (corpus_hash, f"r2-c{context}-b{windows_per_batch}"),
    _scales_to_bytes,
    _scales_from_bytes,
)
PASS_PROGRESS: Product[[str, ActivationSettings, list[int], int, int], bytes] = Product(
    # A running pass's checkpoint, per rank.
    "activation-progress",
    lambda corpus_hash, settings, layers, rank, world: (
        corpus_hash,
        settings.cache_tag,
        "-".join(map(str, layers)),
        f"{rank}of{world}",
    ),
    bytes,
    bytes,
)
PASS_INDEX: Product[[str, ActivationSettings, int, int], dict] = Product(
    # Which passes over a corpus's windows and batches (any token cap, any layers) have a
    # checkpoint on a rank, and how many tokens each has read: a pass resumes from another's.
    "activation-progress-index",
    lambda corpus_hash, settings, rank, world: (corpus_hash, settings.base_tag, f"{rank}of{world}"),
    _json_encode,
    _json_decode,
)
TENSOR_NAMES: Product[[str], dict] = Product(
    # A checkpoint's tensor names as TransformerLens's adapter gives them, by a digest of the
    # architecture, the config and TransformerLens's version (engine.sources.tensor_names).
    "tensor-names",
    lambda digest: (digest,),
    _json_encode,
    _json_decode,
    per_model=False,
)
CORPORA: Product[[], dict] = Product(
    # The content hashes of corpora passed over, by name.
    "activation-corpora",
    lambda: (),
    _json_encode,
    _json_decode,
)


class ProductStore:
    """The cache as one model's products: every read and write of a cached value goes through here.
    Without a cache (--no-cache, an unusable directory, a rank that does not own it) every read is
    a miss and every write a no-op."""

    def __init__(self, cache: ResultCache | None, fingerprint: str) -> None:
        self.cache, self.fingerprint = cache, fingerprint

    @property
    def directory(self) -> Path | None:
        return self.cache.directory if self.cache is not None else None

    def key(self, product: Product[P, T], *args: P.args, **kwargs: P.kwargs) -> str:
        parts = [product.name, *map(str, product.parts(*args, **kwargs))]
        return "/".join([f"v{SCHEMA_VERSION}", self.fingerprint, *parts] if product.per_model else parts)

    def get(self, product: Product[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        """The value, or None when it is missing, does not decode or is not the one asked for (then
        it is dropped)."""
        if self.cache is None:
            return None
        key = self.key(product, *args, **kwargs)
        payload = self.cache.get(key)
        if payload is None:
            return None
        try:
            value = product.decode(payload)
        except DECODE_ERRORS:
            self.cache.delete(key)
            return None
        if product.matches is not None and not product.matches(value, *args, **kwargs):
            self.cache.delete(key)
            return None
        return value

    def put(self, product: Product[P, T], value: T, /, *args: P.args, **kwargs: P.kwargs) -> None:
        if self.cache is not None:
            self.cache.set(self.key(product, *args, **kwargs), product.encode(value))

    def has(self, product: Product[P, T], *args: P.args, **kwargs: P.kwargs) -> bool:
        return self.cache is not None and self.cache.contains(self.key(product, *args, **kwargs))

    def forget(self, product: Product[P, T], *args: P.args, **kwargs: P.kwargs) -> None:
        if self.cache is not None:
            self.cache.delete(self.key(product, *args, **kwargs))

    def bound(self, product: Product[P, T]) -> BoundProduct[P, T]:
        """One product of this store, for a wing that keeps only that one."""
        return BoundProduct(self, product)

    def detach(self) -> None:
        """Stop reading and writing (a torchrun rank that does not own the cache); not closed here."""
        self.cache = None

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


class BoundProduct(Generic[P, T]):
    """One product of a ``ProductStore``: ``get(*args)`` and ``put(value, *args)``."""

    def __init__(self, store: ProductStore, product: Product[P, T]) -> None:
        self.store, self.product = store, product

    def get(self, *args: P.args, **kwargs: P.kwargs) -> T | None:
        return self.store.get(self.product, *args, **kwargs)

    def put(self, value: T, /, *args: P.args, **kwargs: P.kwargs) -> None:
        self.store.put(self.product, value, *args, **kwargs)
