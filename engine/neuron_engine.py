"""The engine's front door: one model, one cache, layers on demand.

``NeuronEngine`` locates the model and fingerprints it cheaply, answers from the cache whenever it
can, and loads weights only for what is missing. It is safe to call from worker threads: loading
and computing are serialised by a lock, cache reads are not.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.corpus import AnyCorpus
from engine.device import check_device_name
from engine.errors import UserError
from engine.evidence import EvidenceReading, LayerActivations
from engine.inputs import LayerInputs
from engine.neurons import LayerNeurons
from engine.null import NullBaseline
from engine.progress import ActivationListener, ProgressListener, ScanProgress
from engine.resources import return_freed_memory
from engine.results import LayerResult
from engine.settings import LOGIT_LENS, ActivationSettings, Lens, Projection, ScanSettings
from engine.sources.base import ModelInfo, ModelSource
from engine.sources.resolve import LOADERS, Loader, ModelLocation, locate_model, open_source
from engine.store.cache import ResultCache, open_cache
from engine.store.evidence_store import EvidenceStore
from engine.store.keys import CacheKeys, decoded
from engine.tokens import Vocabulary

if TYPE_CHECKING:  # torch-bound types: imported where the work runs, never at start-up
    from engine.activations.job import Landed
    from engine.distributed import Ranks
    from engine.firing import LayerFiring, PromptFiring
    from engine.lens.artifact import LensFile
    from engine.lens.fit import FitListener, FitSettings


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """Where the model and the cache are and what computes; validated when built. What a scan
    computes (top-k, dtype, projection) is a ``ScanSettings`` passed with each request."""

    model: str | None = None  # None: the bundled model
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    loader: Loader = "auto"
    cache_dir: Path | None = None
    use_cache: bool = True
    chunk_tokens: int | None = None  # vocabulary tokens per block; None sizes it from free memory

    def __post_init__(self) -> None:
        check_device_name(self.device)
        if self.loader not in LOADERS:
            raise UserError(f"unknown loader {self.loader!r}: use one of {', '.join(LOADERS)}")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise UserError(f"a block needs at least 1 token, got {self.chunk_tokens}")


class NeuronEngine:
    def __init__(self, options: EngineOptions):
        self.options = options
        self.location: ModelLocation = locate_model(options.model)
        self.cache: ResultCache | None
        self.cache, warning = open_cache(options.cache_dir, options.use_cache)
        self.keys = CacheKeys(self.location.fingerprint)
        self.evidence_store = EvidenceStore(self.cache, self.keys)
        self.warnings: list[str] = []
        if warning:
            self.warn(warning)
        if self.cache:  # compiled kernels (engine.scan.block_pass) are kept beside the results
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.cache.directory / "compiled"))
        self._lock = threading.RLock()
        self._source: ModelSource | None = None
        self._bridge: tuple | None = None  # (TransformerBridge, tokenizer, device), built once
        self.run_lock = threading.Lock()  # one forward pass at a time: hooks are set on shared modules
        self._device = None
        self._unembeds: dict[tuple[Projection, str], object] = {}
        self._info: ModelInfo | None = None
        self._vocab: Vocabulary | None = None
        self._forms: np.ndarray | None = None
        self._embedding: np.ndarray | None = None
        self._coherence_nulls: dict = {}
        self._nulls: dict[tuple[Projection, str], NullBaseline] = {}
        self._lenses: dict[str, LensFile] = {}  # the Jacobian lenses opened, by file fingerprint
        self.shrunk_chunks: list[int] = []  # block sizes an out-of-memory error made us fall back to

    # --- keys -------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return self.location.fingerprint

    def layer_key(self, layer: int, settings: ScanSettings) -> str:
        return self.keys.layer(layer, settings)

    # --- checks before any heavy work -------------------------------------------------------
    def check(self, settings: ScanSettings) -> None:
        """Refuse, in milliseconds, what would fail later: a damaged model file or config, a
        device that is not there, settings the model cannot satisfy."""
        info = self._cached_info()
        d_vocab = info.d_vocab if info is not None else self._header_vocab_size()
        if d_vocab is not None and settings.top_k > d_vocab:
            raise UserError(
                f"top-k {settings.top_k} is more than the model's vocabulary of {d_vocab} tokens: "
                f"use at most {d_vocab}"
            )
        if self.options.device not in ("auto", "cpu"):
            _ = self.device  # an explicit CUDA device must exist, even when every result is cached

    def check_layer(self, layer: int) -> None:
        """Refuse a layer the model does not have, from the cache or the model file's header."""
        info = self._cached_info()
        n_layers = info.n_layers if info is not None else self._header_layer_count()
        if n_layers is not None and not 0 <= layer < n_layers:
            raise UserError(f"layer {layer} is out of range: this model has layers 0-{n_layers - 1}")

    def _header_layer_count(self) -> int | None:
        from engine.sources.header import config_layer_count, gguf_layer_count

        if self.location.kind == "gguf":
            return gguf_layer_count(self.location.path)
        return config_layer_count(self.location.path)

    def _header_vocab_size(self) -> int | None:
        from engine.sources.header import config_vocab_size, gguf_vocab_size

        if self.location.kind == "gguf":
            return gguf_vocab_size(self.location.path)
        return config_vocab_size(self.location.path)

    # --- model ------------------------------------------------------------------------------
    @property
    def source_loaded(self) -> bool:
        return self._source is not None

    def _ensure_source(self, listener: ProgressListener | None = None):
        with self._lock:
            if self._source is None:
                if listener:
                    listener(ScanProgress("loading"))
                self._source = open_source(self.location, self.options.loader, self.cache, self.warn)
                self._store_info(self._source.info)
                self._load_vocabulary()  # cached now, so that a warm start never needs the weights
            return self._source

    def _store_info(self, info: ModelInfo) -> None:
        self._info = info
        if self.cache:
            self.cache.set_json(self.keys.info(), info.to_dict())

    def _cached_info(self) -> ModelInfo | None:
        if self._info is None and self.cache:
            data = self.cache.get_json(self.keys.info())
            if data is not None:
                try:
                    self._info = replace(ModelInfo.from_dict(data), name=self.location.display_name)
                except (KeyError, TypeError):
                    self._info = None
        return self._info

    @property
    def info(self) -> ModelInfo:
        if self._cached_info() is None:
            self._ensure_source()
        assert self._info is not None
        return self._info

    @property
    def vocabulary(self) -> Vocabulary:
        return self._load_vocabulary()

    def _load_vocabulary(self) -> Vocabulary:
        if self._vocab is None:
            # Token strings come from the tokenizer files, not the weights: the same weights beside
            # another tokenizer must not show the first one's strings.
            key = self.keys.vocabulary(self.location.vocabulary_fingerprint)
            self._vocab = decoded(self.cache, key, _vocabulary_from_bytes)
            if self._vocab is None:
                self._vocab = self._ensure_source().vocabulary()
                if self.cache:
                    buffer = io.BytesIO()
                    np.savez(buffer, data=self._vocab.data, offsets=self._vocab.offsets)
                    self.cache.set(key, buffer.getvalue())
        return self._vocab

    def token_forms(self, size: int) -> np.ndarray:
        """[size] int32: each token id's normalised form as a number (engine.forms), -1 for none;
        ids past the tokenizer's vocabulary have none."""
        if self._forms is None or self._forms.shape[0] != size:
            from engine.forms import form_ids

            forms = form_ids(self.vocabulary)
            if forms.shape[0] < size:
                forms = np.concatenate([forms, np.full(size - forms.shape[0], -1, dtype=np.int32)])
            self._forms = forms[:size]
        return self._forms

    def warn(self, text: str) -> None:
        """Record a warning once and log it: logging is the one channel for warnings (the command
        line prints them on stderr, the explorer shows them as notifications)."""
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning(text)

    @property
    def device(self):
        if self._device is None:
            from engine.device import cpu_only_torch_warning, resolve_device

            self._device = resolve_device(self.options.device)
            note = cpu_only_torch_warning()
            if note:
                self.warn(note)
        return self._device

    def use_device(self, device) -> None:
        """Compute on ``device`` from now on (a torchrun rank's own GPU)."""
        with self._lock:
            self._device = device
            self._unembeds.clear()

    def device_label(self) -> str:
        """The device name without importing torch when nothing was computed yet."""
        return str(self._device) if self._device is not None else self.options.device

    def _unembed(self, settings: ScanSettings):
        key = (settings.projection, settings.dtype)
        with self._lock:
            if key not in self._unembeds:
                from engine.device import torch_dtype
                from engine.scan.projection import ProjectedUnembed

                source = self._ensure_source()
                device = self.device
                self._unembeds.clear()  # one projection at a time keeps device memory bounded
                unembed = source.unembed()
                try:
                    self._unembeds[key] = ProjectedUnembed(
                        unembed,
                        source.final_norm(),
                        settings.projection,
                        device,
                        torch_dtype(settings.dtype),
                    )
                except Exception as error:
                    from engine.resources import is_out_of_memory, too_big_message

                    if is_out_of_memory(error):
                        raise UserError(too_big_message(device, unembed.nbytes)) from error
                    raise
            return self._unembeds[key]

    # --- lenses (engine.lens) ----------------------------------------------------------------
    def open_lens(self, spec: str) -> Lens:
        """``logit``, ``jacobian`` (the newest lens fitted here for this model) or
        ``jacobian:PATH`` (a lens file): checked against the model's shapes, in one line if wrong."""
        if spec == "logit":
            return LOGIT_LENS
        kind, _, path = spec.partition(":")
        if kind != "jacobian":
            raise UserError(f"unknown lens {spec!r}: use logit, jacobian or jacobian:PATH")
        from engine.lens.artifact import open_lens_file
        from engine.lens.store import fitted_lenses

        if path:
            found = Path(path)
        else:
            fits = fitted_lenses(self.fingerprint)
            if not fits:
                raise UserError(
                    "no Jacobian lens was fitted for this model yet: run 'neuron-tui lens fit' "
                    "(same --model), or give a lens file with --lens jacobian:PATH"
                )
            found = fits[0]
        lens_file = open_lens_file(found)
        lens_file.check_model(self.info.d_model, self.info.n_layers)
        self._lenses[lens_file.digest] = lens_file
        return Lens("jacobian", lens_file.digest)

    def lens_file(self, lens: Lens) -> LensFile | None:
        """The file behind an opened Jacobian lens (None for the logit lens)."""
        if lens.digest is None:
            return None
        if lens.digest not in self._lenses:
            raise UserError(f"the lens {lens.label} is not open here: pass it with --lens jacobian:PATH")
        return self._lenses[lens.digest]

    def transport(self, layer: int, settings: ScanSettings) -> np.ndarray | None:
        """J_l of the settings' lens as float64, or None where the neuron is read as it is."""
        lens_file = self.lens_file(settings.lens)
        return None if lens_file is None else lens_file.transport(layer, self.info.n_layers)

    def fit_lens(
        self,
        corpus: AnyCorpus,
        settings: FitSettings,
        ranks: Ranks | None = None,
        listener: FitListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Path | None:
        """Fit a Jacobian lens on ``corpus`` with TransformerLens (engine.lens.fit): resumable,
        split over torchrun's ranks; the lens file's path on rank 0 (found at once when this fit
        was done before), None on the others."""
        import torch

        from engine.distributed import SINGLE, start, sum_all
        from engine.lens.fit import LensFit, corpus_prompts
        from engine.lens.store import fitted_lens_path

        ranks = ranks or SINGLE
        device = self.rank_device(ranks)
        start(ranks, device)
        done = fitted_lens_path(self.fingerprint, settings.tag(corpus.content_hash))
        # Rank 0's data directory decides (ranks on other machines have their own): all go on or none.
        fitted = torch.tensor([int(ranks.is_writer and done.is_file())], device=device)
        if int(sum_all(fitted, ranks).item()):  # fitted before: no model to load
            return done if ranks.is_writer else None
        bridge, tokenizer, device = self.activation_model(ranks)
        prompts = corpus_prompts(tokenizer, corpus, settings)
        fit = LensFit(
            bridge,
            prompts,
            settings,
            f"{corpus.name}:{corpus.content_hash[:16]}",
            corpus.content_hash,
            self.fingerprint,
            ranks,
            device,
            listener=listener,
            cancelled=cancelled,
        )
        with self.run_lock:
            return fit.run()

    # --- a runnable model, for activations ---------------------------------------------------
    def rank_device(self, ranks):
        from engine.distributed import rank_device

        return rank_device(ranks, self.device)

    def activation_model(self, ranks=None):
        """(TransformerBridge, tokenizer, device) for running the model: the bridge loader's own
        model when it is the source, else one built through transformers (GGUF files too)."""
        from engine.distributed import SINGLE
        from engine.sources.bridge_source import BridgeSource, load_bridge

        with self._lock:
            if self._bridge is None:
                device = self.rank_device(ranks or SINGLE)
                if isinstance(self._source, BridgeSource):
                    bridge, tokenizer = self._source.bridge, self._source.tokenizer
                elif self.location.kind == "gguf":
                    bridge, tokenizer = load_bridge(self.location.path.parent, self.location.path.name)
                else:
                    bridge, tokenizer = load_bridge(self.location.path)
                if device.type != "cpu":
                    bridge = bridge.to(device)
                bridge.eval()
                self._bridge = (bridge, tokenizer, device)
            return self._bridge

    # --- layers -----------------------------------------------------------------------------
    def cached_layer(self, layer: int, settings: ScanSettings) -> LayerResult | None:
        key = self.layer_key(layer, settings)
        result = decoded(self.cache, key, LayerResult.from_bytes)
        if result is not None and result.layer != layer and self.cache:
            self.cache.delete(key)
            return None
        return result

    def is_cached(self, layer: int, settings: ScanSettings) -> bool:
        return self.cache is not None and self.cache.contains(self.layer_key(layer, settings))

    def layer(
        self,
        layer: int,
        settings: ScanSettings,
        listener: ProgressListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> LayerResult:
        """The layer's results, from the cache or computed (and then cached)."""
        if not 0 <= layer < self.info.n_layers:
            raise UserError(
                f"layer {layer} is out of range: this model has layers 0-{self.info.n_layers - 1}"
            )
        cached = self.cached_layer(layer, settings)
        if cached is not None and not cached.has_concepts:  # kept by a version without them
            with self._lock:
                cached = self._with_concepts(cached, settings)
                if self.cache:
                    self.cache.set(self.layer_key(layer, settings), cached.to_bytes())
        if cached is not None:
            if listener:
                listener(ScanProgress("cached", layer, cached.d_mlp, cached.d_mlp))
            return cached
        with self._lock:
            cached = self.cached_layer(layer, settings)  # another thread may have just computed it
            if cached is not None and cached.has_concepts:
                return cached
            unembed = self._unembed(settings)
            w_out = self._ensure_source(listener).mlp_out(layer)
            started = time.perf_counter()

            def report(done: int, total: int) -> None:
                if listener:
                    listener(ScanProgress("scanning", layer, done, total, time.perf_counter() - started))

            report(0, unembed.d_vocab)
            transport = self.transport(layer, settings)
            result = self._scan_shrinking_on_oom(
                layer, w_out, unembed, settings, report, cancelled, transport
            )
            result = self._with_concepts(result, settings)
            del w_out
            return_freed_memory()  # so that memory does not creep up layer after layer
            if self.cache:
                self.cache.set(self.layer_key(layer, settings), result.to_bytes())
            if listener:
                listener(
                    ScanProgress(
                        "done",
                        layer,
                        result.d_mlp,
                        result.d_mlp,
                        time.perf_counter() - started,
                        result.products,
                    )
                )
            return result

    def _with_concepts(self, result: LayerResult, settings: ScanSettings) -> LayerResult:
        """The layer with its "one token or a concept?" numbers (engine.concepts) added."""
        from engine.concepts import coherence_null, direction_coherence_null, token_set_numbers

        unembed = self._unembed(settings)

        def exact_columns(ids):
            return unembed.exact_columns(ids.to(unembed.device))

        memo = (settings.projection, settings.dtype, result.top_k)
        if memo not in self._coherence_nulls:
            self._coherence_nulls[memo] = (
                coherence_null(unembed.d_vocab, result.top_k, exact_columns),
                direction_coherence_null(unembed.d_vocab, unembed.d_model, result.top_k, exact_columns),
            )
        nulls = self._coherence_nulls[memo]
        forms = self.token_forms(unembed.d_vocab)
        promote = token_set_numbers(result.promote_ids, result.promote_dots, forms, exact_columns, *nulls)
        suppress = token_set_numbers(result.suppress_ids, result.suppress_dots, forms, exact_columns, *nulls)
        return replace(
            result,
            promote_forms=promote.forms,
            promote_form_share=promote.form_share,
            promote_coherence=promote.coherence,
            promote_coherence_z=promote.coherence_z,
            promote_coherence_dir_z=promote.coherence_dir_z,
            suppress_forms=suppress.forms,
            suppress_form_share=suppress.form_share,
            suppress_coherence=suppress.coherence,
            suppress_coherence_z=suppress.coherence_z,
            suppress_coherence_dir_z=suppress.coherence_dir_z,
        )

    # --- another checkpoint, neuron by neuron (engine.diff) ------------------------------------
    def mlp_out(self, layer: int) -> np.ndarray:
        """W_out of ``layer`` [d_mlp, d_model] (loads the weights)."""
        with self._lock:
            return self._ensure_source().mlp_out(layer)

    def check_comparable(self, other: NeuronEngine) -> None:
        from engine.diff import check_comparable

        check_comparable(self.info, other.info)
        mine, theirs = self.vocabulary, other.vocabulary
        same = np.array_equal(mine.offsets, theirs.offsets) and np.array_equal(mine.data, theirs.data)
        if not same:
            self.warn(
                f"{self.info.name} and {other.info.name} have different tokenizer files: token ids are "
                "compared as ids, and the strings shown are this model's"
            )

    def cached_diff(self, layer: int, other: NeuronEngine, settings: ScanSettings):
        from engine.diff import LayerDiff

        return decoded(self.cache, self.keys.diff(other.fingerprint, settings, layer), LayerDiff.from_bytes)

    def diff(self, layer: int, other: NeuronEngine, settings: ScanSettings, listener=None):
        """Layer ``layer`` of this model against ``other`` (same shapes), neuron by neuron: from the
        cache, or from both scans (each from its own cache or computed) and both weights, one layer
        of each at a time."""
        from engine.diff import layer_diff

        found = self.cached_diff(layer, other, settings)
        if found is not None:
            return found
        mine = self.neurons(layer, settings, listener=listener)
        theirs = other.neurons(layer, settings, listener=listener)
        found = layer_diff(self.mlp_out(layer), other.mlp_out(layer), mine, theirs, settings.top_k)
        if self.cache:
            self.cache.set(self.keys.diff(other.fingerprint, settings, layer), found.to_bytes())
        return found

    # --- the input side ---------------------------------------------------------------------
    def inputs(self, layer: int, settings: ScanSettings) -> LayerInputs:
        """The layer's input side (engine.inputs), from the cache or computed from the weights."""
        key = self.keys.inputs(layer, settings.top_k)
        found = decoded(self.cache, key, LayerInputs.from_bytes)
        if found is not None:
            return found
        from engine.scan.input_side import layer_inputs

        with self._lock:
            source = self._ensure_source()
            if self._embedding is None:
                self._embedding = source.embedding()
            found = layer_inputs(
                layer,
                source.mlp_in(layer),
                source.mlp_norm(layer),
                source.mlp_out(layer),
                self._embedding,
                settings.top_k,
                self.device,
            )
        if self.cache:
            self.cache.set(key, found.to_bytes())
        return found

    def cached_inputs(self, layer: int, settings: ScanSettings) -> LayerInputs | None:
        return decoded(self.cache, self.keys.inputs(layer, settings.top_k), LayerInputs.from_bytes)

    def _scan_shrinking_on_oom(
        self, layer, w_out, unembed, settings, report, cancelled, transport=None
    ) -> LayerResult:
        from engine.scan.layer_scan import scan_shrinking_on_oom

        return scan_shrinking_on_oom(
            layer,
            w_out,
            unembed,
            settings,
            self.options.chunk_tokens,
            report,
            cancelled,
            on_shrink=self.shrunk_chunks.append,
            transport=transport,
        )

    def layers(
        self,
        layers: list[int],
        settings: ScanSettings,
        listener: ProgressListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[LayerResult]:
        for layer in layers:
            yield self.layer(layer, settings, listener=listener, cancelled=cancelled)

    def neurons(
        self, layer: int, settings: ScanSettings, listener: ProgressListener | None = None
    ) -> LayerNeurons:
        """The layer with every per-neuron value derived (class, per-unit max-dot, null z)."""
        return self.derive(self.layer(layer, settings, listener=listener), settings)

    def derive(
        self,
        result: LayerResult,
        settings: ScanSettings,
        evidence: LayerActivations | None = None,
        inputs: LayerInputs | None = None,
    ) -> LayerNeurons:
        """A layer's results in hand, derived against the null baseline of ``settings``."""
        return LayerNeurons.derive(
            result, self.null_baseline(settings), settings.projection.cosine, evidence, inputs
        )

    def neuron_scores(self, layer: int, neuron: int, settings: ScanSettings) -> np.ndarray:
        """One neuron's float64 scores against the whole vocabulary (loads the weights if needed)."""
        import torch

        from engine.scan.layer_scan import exact_score_rows, neuron_rows64

        with self._lock:
            unembed = self._unembed(settings)
            w_out = self._ensure_source().mlp_out(layer)
            row = torch.from_numpy(np.ascontiguousarray(w_out[neuron : neuron + 1], dtype=np.float32)).to(
                unembed.device
            )
            transport = self.transport(layer, settings)
            rows64, _ = neuron_rows64(
                row,
                settings.projection.cosine,
                None if transport is None else torch.from_numpy(transport).to(unembed.device),
            )
            return exact_score_rows(rows64, unembed)[0].cpu().numpy()

    # --- tokens -----------------------------------------------------------------------------
    def exact_token_neurons(self, token_ids: list[int], layers: list[int], top: int, settings: ScanSettings):
        """Each token's ``top`` neurons over ``layers`` by exact float64 |dot| (loads the weights)."""
        from engine.scan.token_search import exact_token_neurons

        with self._lock:
            source = self._ensure_source()
            return exact_token_neurons(
                token_ids,
                layers,
                source.mlp_out,
                self._unembed(settings),
                top,
                settings.projection.cosine,
                lambda layer: self.transport(layer, settings),
            )

    # --- null baseline ----------------------------------------------------------------------
    def _null_key(self, settings: ScanSettings) -> str:
        from engine.null import NULL_SAMPLES, NULL_SEED

        return self.keys.null(settings, NULL_SAMPLES, NULL_SEED)

    def has_null_baseline(self, settings: ScanSettings) -> bool:
        """Whether the baseline is at hand (held, or in the cache): reading it then takes no model."""
        if (settings.projection, settings.dtype) in self._nulls:
            return True
        return self.cache is not None and self.cache.contains(self._null_key(settings))

    def null_baseline(self, settings: ScanSettings) -> NullBaseline:
        memo_key = (settings.projection, settings.dtype)
        if memo_key in self._nulls:
            return self._nulls[memo_key]
        from engine.null import NULL_SAMPLES

        key = self._null_key(settings)

        def null_values(payload: bytes) -> np.ndarray:
            if len(payload) != 8 * NULL_SAMPLES:
                raise ValueError("a null baseline of another size")
            return np.frombuffer(payload, dtype="<f8").copy()

        values = decoded(self.cache, key, null_values)
        if values is None:
            from engine.null import compute_null

            with self._lock:
                values = compute_null(self._unembed(settings)).values
            if self.cache:
                self.cache.set(key, values.astype("<f8").tobytes())
        baseline = NullBaseline(values=values)
        self._nulls[memo_key] = baseline
        return baseline

    # --- the corpus pass and what it leaves (engine.activations, reached only through here) ---
    def evidence(
        self, layer: int, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings
    ) -> LayerActivations | None:
        """A layer's activation evidence from the cache (no torch, no model), or None."""
        return self.evidence_store.evidence(corpus_hash, settings, scan, layer)

    def best_evidence(
        self, layer: int, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings
    ) -> tuple[LayerActivations, EvidenceReading] | None:
        """The layer's evidence that has read the most of this corpus under any token cap (a
        finished pass, or the first tokens of a stopped or running one), and how much it read."""
        return self.evidence_store.best_evidence(corpus_hash, settings, scan, layer)

    def known_corpus_hash(self, name: str) -> str | None:
        """The content hash of the corpus of that name that a pass last ran over, if any."""
        return self.evidence_store.known_corpus_hash(name)

    def corpus_pass(
        self,
        layers: list[int],
        corpus: AnyCorpus,
        settings: ActivationSettings,
        scan: ScanSettings,
        ranks: Ranks | None = None,
        listener: ActivationListener | None = None,
        cancelled: Callable[[], bool] | None = None,
        checkpoint_seconds: float = 30.0,
        on_landed: Landed | None = None,
        land_seconds: float | None = None,
    ) -> dict[int, LayerActivations] | None:
        """Run the model over ``corpus`` and return each layer's evidence (cached, resumable,
        split across torchrun ranks); None on ranks other than 0. With one layer it is that
        layer's pass: the forward pass stops after it once the final norm's scales of the
        windows are known. ``on_landed`` hears the evidence of the tokens read so far as it
        lands (engine.activations.job.ActivationJob); a stopped pass raises ScanCancelled."""
        from engine.activations.job import ActivationJob
        from engine.distributed import SINGLE

        job = ActivationJob(
            self,
            layers,
            corpus,
            settings,
            scan,
            ranks or SINGLE,
            listener,
            cancelled,
            checkpoint_seconds,
            on_landed,
            land_seconds,
        )
        return job.run()

    def probe(
        self,
        text: str,
        layers: list[int],
        top: int,
        settings: ScanSettings,
        held: Mapping[int, LayerResult] | None = None,
    ) -> tuple[PromptFiring, dict[tuple[int, int], tuple[int, int]]]:
        """The model on ``text``: per token the ``top`` neurons of each layer that fire hardest,
        and for each of them the token it promotes most and the one it suppresses most (from the
        layer's scan: ``held`` in memory, else the cache; neurons of layers not scanned yet are
        left out of that map)."""
        from engine.activations.probe import probe_text

        bridge, tokenizer, device = self.activation_model()
        with self.run_lock:
            firing = probe_text(bridge, tokenizer, text, layers, top, device)
        promoted: dict[tuple[int, int], tuple[int, int]] = {}
        for index, layer in enumerate(firing.layers):
            result = (held or {}).get(layer) or self.cached_layer(layer, settings)
            if result is None:
                continue
            for neuron in set(firing.neurons[:, index, :].flatten().tolist()):
                promoted[(layer, neuron)] = (
                    int(result.promote_ids[neuron, 0]),
                    int(result.suppress_ids[neuron, 0]),
                )
        return firing, promoted

    def probe_layer(self, text: str, layer: int) -> LayerFiring:
        """The model on ``text``, up to ``layer``: every neuron's activation on every token."""
        from engine.activations.probe import probe_layer

        bridge, tokenizer, device = self.activation_model()
        with self.run_lock:
            return probe_layer(bridge, tokenizer, text, layer, device)

    # --- several processes ------------------------------------------------------------------
    def scan_across_ranks(
        self,
        layers: list[int],
        settings: ScanSettings,
        ranks: Ranks,
        listener: ProgressListener | None = None,
        said: Callable[[str], None] | None = None,
    ) -> Iterator[LayerResult] | None:
        """Under torchrun: each rank scans its share of ``layers`` on its own device (LOCAL_RANK).
        On rank 0, the results of every layer in order (the others' received as bytes and cached
        here: rank 0 owns the cache); on the other ranks None, once their layers are sent. The
        caller stops the process group (``engine.distributed.stop``) when done."""
        from engine import distributed

        device = self.rank_device(ranks)
        self.use_device(device)
        distributed.start(ranks, device)
        owner = {layer: index % ranks.world for index, layer in enumerate(layers)}
        mine = [layer for layer in layers if owner[layer] == ranks.rank]
        if not ranks.is_writer:
            self.cache = None  # rank 0 owns the cache (on several machines there are several)
            self.evidence_store.cache = None
            for layer in mine:
                result = self.layer(layer, settings)
                if said is not None:
                    said(f"rank {ranks.rank}/{ranks.world}: layer {layer} scanned on {device}")
                distributed.send_bytes(result.to_bytes(), 0, device)
            return None
        own = {layer: self.layer(layer, settings, listener=listener) for layer in mine}

        def in_order() -> Iterator[LayerResult]:
            for layer in layers:
                if owner[layer] == 0:
                    yield own.pop(layer)
                    continue
                result = LayerResult.from_bytes(distributed.receive_bytes(owner[layer], device))
                if self.cache:
                    self.cache.set(self.layer_key(layer, settings), result.to_bytes())
                yield result

        return in_order()

    def close(self) -> None:
        if self._source is not None and hasattr(self._source, "close"):
            self._source.close()
        if self.cache:
            self.cache.close()


def _vocabulary_from_bytes(payload: bytes) -> Vocabulary:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return Vocabulary(data=archive["data"], offsets=archive["offsets"])
