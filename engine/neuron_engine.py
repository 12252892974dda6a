"""The engine's front door: one model, one cache, layers on demand.

``NeuronEngine`` locates the model and fingerprints it cheaply, answers from the cache whenever it
can, and loads weights only for what is missing. It is safe to call from worker threads: loading
and computing are serialised by a lock, cache reads are not.

Front ends (the explorer, the command line) talk to the engine through this module only, with the
value types of ``engine.data``, ``engine.settings``, ``engine.columns`` and ``engine.errors``: what
they need of the wings (the collection, exports, corpora, lenses, several processes) is a method
here, or a type re-exported here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.activations.corpus import default_corpus_name, load_corpus
from engine.activations.documents import AnyCorpus
from engine.data.attribution import NeuronAblation, TextAttribution
from engine.data.dictionary import DictionaryInfo, UnitNeighbours
from engine.data.diff import LayerDiff, check_comparable
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.experts import LayerExperts
from engine.data.inputs import LayerInputs
from engine.data.model import EmbeddingRows, MlpInputs, ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.null import NullBaseline
from engine.data.progress import ActivationListener, AttributionListener, ProgressListener, ScanProgress
from engine.data.results import LayerResult
from engine.data.routing import LayerRouting
from engine.data.tokens import Vocabulary
from engine.dictionaries.shelf import DictionarySet, DictionaryShelf
from engine.dictionaries.weights import Dictionary
from engine.errors import UserError
from engine.lens.shelf import LensShelf
from engine.runtime.device import check_device_name
from engine.runtime.ranks import Ranks
from engine.runtime.resources import return_freed_memory
from engine.settings import (
    LOADERS,
    ActivationSettings,
    DictionaryFitSettings,
    Dtype,
    FitSettings,
    Lens,
    Loader,
    ScanSettings,
    Units,
)
from engine.sources.base import ModelSource
from engine.sources.resolve import (
    ModelLocation,
    check_loader,
    layer_count,
    locate_model,
    model_widths,
    open_source,
    runnable_model,
    vocab_size,
)
from engine.store import products
from engine.store.cache import open_cache
from engine.store.collection import Collection, Marked
from engine.store.evidence_store import EvidenceStore
from engine.store.products import ProductStore

if TYPE_CHECKING:  # torch-bound types: imported where the work runs, never at start-up
    from engine.activations.job import Landed
    from engine.activations.probe_scales import ProbeScales
    from engine.data.firing import LayerFiring, PromptFiring
    from engine.data.progress import FitListener
    from engine.lens.artifact import LensFile
    from engine.scan.token_search import TokenNeuron

# Types a front end holds, re-exported so that it never imports the wings that define them.
__all__ = [
    "AnyCorpus",
    "Collection",
    "EngineOptions",
    "Marked",
    "NeuronEngine",
    "Ranks",
    "check_output_path",
    "default_cache_location",
]

log = logging.getLogger(__name__)


def check_output_path(path: str) -> None:
    """Refuse, before any work, an output the exports cannot write (a folder, an unknown format)."""
    from engine.store.export import check_output_path as check

    check(path)


def default_cache_location() -> tuple[Path, str, str]:
    """(the cache directory used when none is given, why that one, the variable that overrides it)."""
    from engine.store.location import CACHE_ENV, default_cache_dir

    path, why = default_cache_dir()
    return path, why, CACHE_ENV


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


_ENCODERS_KEPT = 4  # dictionaries' encoders kept on their device for the probes
_INPUT_BLOCK_NEURONS = 4096  # a layer of experts' input side, computed a few experts at a time


class NeuronEngine:
    def __init__(self, options: EngineOptions):
        self.options = options
        self.location: ModelLocation = locate_model(options.model)
        check_loader(self.location, options.loader)
        cache, warning = open_cache(options.cache_dir, options.use_cache)
        self.products = ProductStore(cache, self.location.fingerprint)  # every cached value goes here
        self.evidence_store = EvidenceStore(self.products)
        self.lenses = LensShelf(self.location.fingerprint)
        self.dictionaries = DictionaryShelf()
        self._encoder_memo: OrderedDict[tuple, object] = OrderedDict()  # the probes' encoders
        self._neighbours: dict[tuple, UnitNeighbours] = {}
        self.warnings: list[str] = []
        if warning:
            self.warn(warning)
        if cache:  # compiled kernels (engine.scan.block_pass) are kept beside the results
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache.directory / "compiled"))
        self._lock = threading.RLock()
        self._source: ModelSource | None = None
        self._runnable: tuple | None = None  # (TransformerBridge, tokenizer, device), built once
        self.run_lock = threading.Lock()  # one forward pass at a time: hooks are set on shared modules
        self._device = None
        self._unembeds: dict[tuple, object] = {}
        self._info: ModelInfo | None = None
        self._vocab: Vocabulary | None = None
        self._forms: np.ndarray | None = None
        self._embedding: EmbeddingRows | None = None  # W_E as stored, read by the input side
        self._concept_nulls: dict = {}
        self._nulls: dict[tuple, NullBaseline] = {}
        self.shrunk_chunks: list[int] = []  # block sizes an out-of-memory error made us fall back to

    @classmethod
    def beside(cls, other: NeuronEngine, options: EngineOptions) -> NeuronEngine:
        """Another door on the same model file that runs the model ``other`` has already built
        (a benchmark times a pass without timing the load again)."""
        engine = cls(options)
        if engine.fingerprint != other.fingerprint:
            raise UserError("a door beside another must open the same model")
        engine._runnable = other._runnable
        return engine

    # --- identity, cache ---------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return self.location.fingerprint

    @property
    def cache_directory(self) -> Path | None:
        """Where results are kept (None: the cache is off or could not be used)."""
        return self.products.directory

    def warn(self, text: str) -> None:
        """Record a warning once and log it: logging is the one channel for warnings (the command
        line prints them on stderr, the explorer shows them as notifications)."""
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning(text)

    # --- checks before any heavy work -------------------------------------------------------
    def check(self, settings: ScanSettings) -> None:
        """Refuse, in milliseconds, what would fail later: a damaged model file or config, a
        device that is not there, settings the model cannot satisfy."""
        info = self._cached_info()
        d_vocab = info.d_vocab if info is not None else vocab_size(self.location)
        if d_vocab is not None and settings.top_k > d_vocab:
            raise UserError(
                f"top-k {settings.top_k} is more than the model's vocabulary of {d_vocab} tokens: "
                f"use at most {d_vocab}"
            )
        if self.options.device not in ("auto", "cpu"):
            _ = self.device  # an explicit CUDA device must exist, even when every result is cached

    def check_layer(self, layer: int) -> None:
        """Refuse a layer the model does not have, from the cache or the model file's header."""
        self.check_layers([layer])

    def check_layers(self, layers: list[int]) -> None:
        """``check_layer`` for each, the model's layer count read once (a GGUF header is parsed
        whole to count them: once per layer cost more than attributing a short text)."""
        info = self._info if self._info is not None else self._cached_info()
        n_layers = info.n_layers if info is not None else layer_count(self.location)
        for layer in layers:
            if n_layers is not None and not 0 <= layer < n_layers:
                raise UserError(f"layer {layer} is out of range: this model has layers 0-{n_layers - 1}")

    @staticmethod
    def precision(device: str, choice: str) -> Dtype:
        """The product precision for ``--dtype`` on ``--device``: ``auto`` is bfloat16 where the
        scan runs on CUDA and float32 on a CPU (engine.runtime.device); otherwise the choice."""
        from engine.runtime.device import default_precision

        if choice == "auto":
            return default_precision(device)
        if choice not in ("float32", "bfloat16"):
            raise UserError(f"unknown dtype {choice!r}: use auto, float32 or bfloat16")
        return "float32" if choice == "float32" else "bfloat16"

    # --- the model ---------------------------------------------------------------------------
    @property
    def source_loaded(self) -> bool:
        return self._source is not None

    def _ensure_source(self, listener: ProgressListener | None = None) -> ModelSource:
        with self._lock:
            if self._source is None:
                if listener:
                    listener(ScanProgress("loading"))
                names = self.products.bound(products.TENSOR_NAMES)
                self._source = open_source(self.location, self.options.loader, names, self.warn)
                self._info = self._source.info
                self.products.put(products.INFO, self._info)
                self._load_vocabulary()  # cached now, so that a warm start never needs the weights
            return self._source

    def _cached_info(self) -> ModelInfo | None:
        if self._info is None:
            found = self.products.get(products.INFO)
            if found is not None:
                self._info = replace(found, name=self.location.display_name)
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
            key = self.location.vocabulary_fingerprint
            self._vocab = self.products.get(products.VOCABULARY, key)
            if self._vocab is None:
                self._vocab = self._ensure_source().vocabulary()
                self.products.put(products.VOCABULARY, self._vocab, key)
        return self._vocab

    def token_forms(self, size: int) -> np.ndarray:
        """[size] int32: each token id's normalised form as a number (engine.scan.forms), -1 for
        none; ids past the tokenizer's vocabulary have none."""
        if self._forms is None or self._forms.shape[0] != size:
            from engine.scan.forms import form_ids

            forms = form_ids(self.vocabulary)
            if forms.shape[0] < size:
                forms = np.concatenate([forms, np.full(size - forms.shape[0], -1, dtype=np.int32)])
            self._forms = forms[:size]
        return self._forms

    @property
    def device(self):
        if self._device is None:
            from engine.runtime.device import cpu_only_torch_warning, resolve_device

            self._device = resolve_device(self.options.device)
            note = cpu_only_torch_warning()
            if note:
                self.warn(note)
        return self._device

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

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
                from engine.scan.projection import project_unembed

                source = self._ensure_source()
                self._unembeds.clear()  # one projection at a time keeps device memory bounded
                self._unembeds[key] = project_unembed(
                    source.unembed(), source.final_norm(), settings, self.device
                )
            return self._unembeds[key]

    def mlp_out(self, layer: int) -> np.ndarray:
        """W_out of ``layer`` [d_mlp, d_model] (loads the weights)."""
        with self._lock:
            return self._ensure_source().mlp_out(layer)

    def rank_device(self, ranks: Ranks):
        from engine.runtime.distributed import rank_device

        return rank_device(ranks, self.device)

    def activation_model(self, ranks: Ranks | None = None):
        """(TransformerBridge, tokenizer, device) for running the model: the bridge loader's own
        model when it is the source, else one built through transformers (GGUF files too)."""
        from engine.runtime.ranks import SINGLE

        with self._lock:
            if self._runnable is None:
                # The model carries its own unembedding: the scan's projected copy (the size of a
                # small model's whole embedding) goes, and is built again if another scan needs it.
                self._unembeds.clear()
                return_freed_memory()
                device = self.rank_device(ranks or SINGLE)
                bridge, tokenizer = runnable_model(self.location, self._source)
                if device.type != "cpu":
                    bridge = bridge.to(device)
                bridge.eval()
                self._runnable = (bridge, tokenizer, device)
            return self._runnable

    # --- lenses (engine.lens) ----------------------------------------------------------------
    def open_lens(self, spec: str) -> Lens:
        """``logit``, ``jacobian`` (the newest lens fitted here for this model) or
        ``jacobian:PATH`` (a lens file): checked against the model's shapes, in one line if wrong."""
        if spec == "logit":
            return self.lenses.open(spec, 0, 0)
        return self.lenses.open(spec, self.info.d_model, self.info.n_layers)

    def lens_file(self, lens: Lens) -> LensFile | None:
        """The file behind an opened Jacobian lens (None for the logit lens)."""
        return self.lenses.file(lens)

    def fitted_lenses(self) -> list[Path]:
        """The lenses fitted here for this model, newest first."""
        return self.lenses.fitted()

    def transport(self, layer: int, settings: ScanSettings) -> np.ndarray | None:
        """J_l of the settings' lens as float64, or None where the neuron is read as it is."""
        return self.lenses.transport(settings.lens, layer, self.info.n_layers)

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
        from engine.lens.fit import fit_lens
        from engine.runtime.ranks import SINGLE

        with self.run_lock:
            return fit_lens(self, corpus, settings, ranks or SINGLE, listener, cancelled)

    # --- dictionaries (engine.dictionaries) ---------------------------------------------------
    def open_dictionary(self, paths: list[str]) -> Units:
        """The dictionaries under ``paths`` (folders as their libraries wrote them, Gemma Scope
        params.npz, or folders of them), checked against the model's shapes from its header or
        the cache, in one line if wrong: the units a ``ScanSettings`` names to read them."""
        info = self._info if self._info is not None else self._cached_info()
        d_model: int | None
        d_mlp: int | None
        n_layers: int | None
        if info is not None:
            d_model, d_mlp, n_layers = info.d_model, info.d_mlp, info.n_layers
        else:
            (d_model, d_mlp), n_layers = model_widths(self.location), layer_count(self.location)
        with self._lock:
            return self.dictionaries.open([self._dictionary_path(p) for p in paths], d_model, n_layers, d_mlp)

    def _dictionary_path(self, spec: str) -> Path:
        """A path as given, or for ``fitted`` the newest dictionary fitted here for this model."""
        if spec != "fitted":
            return Path(spec)
        if Path(spec).exists():
            self.warn(
                "'fitted' is a path here: reading it, not the newest fit (give ./fitted to silence this)"
            )
            return Path(spec)
        from engine.dictionaries.fit import fitted_dictionaries
        from engine.store.location import default_data_dir

        fits = fitted_dictionaries(self.fingerprint, default_data_dir())
        if not fits:
            raise UserError(
                "no dictionary was fitted for this model yet: run 'neuron-tui dictionary fit' "
                "(same --model), or give a dictionary's folder with --dictionary PATH"
            )
        return fits[0]

    def dictionary_fit_folder(self, corpus: AnyCorpus, settings: DictionaryFitSettings) -> Path:
        """Where the fit of ``settings`` on ``corpus`` is kept (checked: the layer, k against the
        latents); ``dictionary_fitted`` says whether it is finished."""
        from engine.dictionaries.fit import fits_folder
        from engine.store.location import default_data_dir

        self.check_layer(settings.layer)
        latents = settings.latents or 8 * self.info.d_model
        if settings.k > latents:
            raise UserError(f"k {settings.k} is more than the {latents} latents: use a smaller k")
        return fits_folder(self.fingerprint, default_data_dir()) / settings.tag(corpus.content_hash, latents)

    @staticmethod
    def dictionary_fitted(folder: Path) -> bool:
        from engine.dictionaries.fit import FINISHED

        return (folder / FINISHED).is_file()

    def fit_dictionary(
        self,
        corpus: AnyCorpus,
        settings: DictionaryFitSettings,
        listener: FitListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Path:
        """Train a sparse autoencoder or transcoder of one layer on ``corpus`` with sparsify's
        trainer (engine.dictionaries.fit), resuming a stopped fit; its folder (found at once when
        this fit was done before), for --dictionary."""
        from engine.activations.windows import tokenize_corpus
        from engine.dictionaries.fit import fit_dictionary

        folder = self.dictionary_fit_folder(corpus, settings)
        if self.dictionary_fitted(folder):
            return folder
        bridge, tokenizer, _ = self.activation_model()
        tokenized = tokenize_corpus(
            corpus,
            lambda text: tokenizer(text)["input_ids"],
            settings.context,
            settings.max_tokens,
            encode_more=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        )
        whole = [(a, b) for a, b in tokenized.windows if b - a == settings.context]
        if len(whole) < settings.batch_size:
            raise UserError(
                f"the corpus gives {len(whole)} whole windows of {settings.context} tokens, fewer "
                f"than one batch of {settings.batch_size}: use a larger corpus or --max-tokens, or a "
                "smaller --context"
            )
        windows = np.stack([tokenized.token_ids[a:b] for a, b in whole])
        with self.run_lock:
            return fit_dictionary(bridge.original_model, windows, settings, folder, listener, cancelled)

    def dictionary_set(self, units: Units) -> DictionarySet | None:
        """The opened set behind ``units`` (None for the neurons)."""
        return self.dictionaries.get(units)

    def _dictionary(self, layer: int, units: Units) -> Dictionary:
        """The dictionary ``units`` reads at ``layer``, or one line why there is none."""
        found = self.dictionaries.get(units)
        if found is None:
            raise UserError("no dictionary was opened: give one with --dictionary PATH")
        return found.at(layer)

    def dictionary_infos(self, units: Units) -> dict[int, DictionaryInfo]:
        """Per layer, the dictionary whose features ``units`` reads (empty for the neurons)."""
        found = self.dictionaries.get(units)
        return {} if found is None else found.infos

    def unit_layers(self, settings: ScanSettings) -> list[int] | None:
        """The layers that have units of ``settings`` (None: every layer, the neurons)."""
        found = self.dictionaries.get(settings.units)
        return None if found is None else found.layers

    def check_unit_layers(self, layers: list[int], settings: ScanSettings) -> None:
        """Refuse, in one line, a layer the opened dictionaries do not read (nothing is loaded)."""
        found = self.dictionaries.get(settings.units)
        if found is not None:
            for layer in layers:
                found.check(layer)

    def neighbours(self, layer: int, units: Units, of_features: bool, top: int = 5) -> UnitNeighbours:
        """Neurons and features of ``layer`` side by side (engine.dictionaries.neighbours): for each
        feature of ``units`` the ``top`` neurons whose W_out rows are closest to its direction by
        |cosine| (``of_features``), or for each neuron the closest features."""
        from engine.dictionaries.neighbours import closest

        key = (units.digest, layer, of_features, top)
        if key not in self._neighbours:
            directions = self._dictionary(layer, units).direction_rows()
            with self._lock:
                w_out = np.concatenate(list(self._w_out_blocks(layer)))
            these, those = (directions, w_out) if of_features else (w_out, directions)
            self._neighbours[key] = closest(layer, these, those, top)
        return self._neighbours[key]

    def refuse_dictionary(self, settings: ScanSettings, what: str) -> None:
        """One line for what is computed for the neurons only."""
        if settings.units.is_dictionary:
            raise UserError(
                f"{what} reads the model's neurons, not a dictionary's features: leave out --dictionary"
            )

    # --- layers ------------------------------------------------------------------------------
    def cached_layer(self, layer: int, settings: ScanSettings) -> LayerResult | None:
        return self.products.get(products.LAYER, layer, settings)

    def is_cached(self, layer: int, settings: ScanSettings) -> bool:
        return self.products.has(products.LAYER, layer, settings)

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
        self.check_unit_layers([layer], settings)
        cached = self.cached_layer(layer, settings)
        if cached is not None and not cached.has_concepts:  # kept by a version without them
            with self._lock:
                cached = self._with_concepts(cached, settings)
                self.products.put(products.LAYER, cached, layer, settings)
        if cached is not None:
            if listener:
                listener(ScanProgress("cached", layer, cached.d_mlp, cached.d_mlp))
            return cached
        with self._lock:
            cached = self.cached_layer(layer, settings)  # another thread may have just computed it
            if cached is not None and cached.has_concepts:
                return cached
            return self._scan_layer(layer, settings, listener, cancelled)

    def _scan_layer(
        self,
        layer: int,
        settings: ScanSettings,
        listener: ProgressListener | None,
        cancelled: Callable[[], bool] | None,
    ) -> LayerResult:
        """Compute a layer (the lock held), keep it, and say so."""
        from engine.scan.layer_scan import scan_shrinking_on_oom

        # What ran before (a forward pass, another layer) may have left freed pages in the heap:
        # handing them back first keeps the scan's transient memory from stacking on them.
        return_freed_memory()
        unembed = self._unembed(settings)
        source = self._ensure_source(listener)
        started = time.perf_counter()

        def report(done: int, total: int) -> None:
            if listener:
                listener(ScanProgress("scanning", layer, done, total, time.perf_counter() - started))

        report(0, unembed.d_vocab)
        experts = self.info.experts(layer)
        if settings.units.is_dictionary:  # a dictionary's decoder rows, scanned as W_out rows are
            result = self._scan_dictionary(layer, settings, unembed, report, cancelled)
        elif experts is not None:  # one expert at a time (engine.scan.expert_layer)
            from engine.scan.expert_layer import scan_experts

            result = scan_experts(
                layer,
                experts,
                lambda expert: source.expert_out(layer, expert),
                unembed,
                settings,
                self.options.chunk_tokens,
                report,
                cancelled,
                on_shrink=self.shrunk_chunks.append,
                transport=self.transport(layer, settings),
            )
        else:
            result = scan_shrinking_on_oom(
                layer,
                source.mlp_out(layer),
                unembed,
                settings,
                self.options.chunk_tokens,
                report,
                cancelled,
                on_shrink=self.shrunk_chunks.append,
                transport=self.transport(layer, settings),
            )
        result = self._with_concepts(result, settings)
        return_freed_memory()  # so that memory does not creep up layer after layer
        self.products.put(products.LAYER, result, layer, settings)
        if listener:
            seconds = time.perf_counter() - started
            listener(ScanProgress("done", layer, result.d_mlp, result.d_mlp, seconds, result.products))
        return result

    def _scan_dictionary(self, layer, settings, unembed, report, cancelled) -> LayerResult:
        from engine.scan.layer_scan import scan_shrinking_on_oom

        rows, transport = self._dictionary_rows(layer, settings)
        result = scan_shrinking_on_oom(
            layer,
            rows,
            unembed,
            settings,
            self.options.chunk_tokens,
            report,
            cancelled,
            on_shrink=self.shrunk_chunks.append,
            transport=transport,
        )
        return replace(result, dictionary=self._dictionary(layer, settings.units).info.name)

    def _dictionary_rows(self, layer: int, settings: ScanSettings) -> tuple[np.ndarray, np.ndarray | None]:
        """(each feature's direction [d_sae, d_model], the lens transport to apply to it): under a
        Jacobian lens, a feature writing to several layers is read as the sum of J_l times its
        row for layer l (computed here in float64), so no transport is left to apply."""
        dictionary = self._dictionary(layer, settings.units)
        if settings.lens.digest is None or len(dictionary.W_dec) == 1:
            target = next(iter(dictionary.W_dec))
            return dictionary.direction_rows(), self.transport(target, settings)
        total = np.zeros(next(iter(dictionary.W_dec.values())).shape, dtype=np.float64)
        for target, rows in dictionary.W_dec.items():
            transport = self.transport(target, settings)
            total += rows if transport is None else rows.astype(np.float64) @ transport.T
        return total.astype(np.float32), None

    def _with_concepts(self, result: LayerResult, settings: ScanSettings) -> LayerResult:
        """The layer with its "one token or a concept?" numbers (engine.scan.concepts) added."""
        from engine.scan.concepts import concept_nulls, with_concepts

        unembed = self._unembed(settings)
        memo = (settings.projection, settings.dtype, result.top_k)
        if memo not in self._concept_nulls:
            self._concept_nulls[memo] = concept_nulls(unembed, result.top_k)
        forms = self.token_forms(unembed.d_vocab)
        return with_concepts(result, unembed, forms, self._concept_nulls[memo])

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
        """A layer's results in hand, derived against the null baseline of ``settings``; a
        dictionary's features with their closest neurons."""
        neighbours = None
        if result.dictionary is not None and settings.units.is_dictionary:
            neighbours = self.neighbours(result.layer, settings.units, of_features=True)
        return LayerNeurons.derive(
            result,
            self.null_baseline(settings),
            settings.projection.cosine,
            evidence,
            inputs,
            None,
            neighbours,
        )

    def neuron_scores(self, layer: int, neuron: int, settings: ScanSettings) -> np.ndarray:
        """One neuron's float64 scores against the whole vocabulary (loads the weights if needed)."""
        from engine.scan.layer_scan import neuron_score_row

        with self._lock:
            if settings.units.is_dictionary:
                rows, transport = self._dictionary_rows(layer, settings)
                return neuron_score_row(rows[neuron], self._unembed(settings), settings, transport)
            row = self._neuron_row(layer, neuron)
            unembed = self._unembed(settings)
            return neuron_score_row(row, unembed, settings, self.transport(layer, settings))

    def _w_out_blocks(self, layer: int) -> Iterator[np.ndarray]:
        """A layer's W_out rows in blocks: the whole layer, or one expert at a time."""
        source = self._ensure_source()
        experts = self.info.experts(layer)
        if experts is None:
            yield source.mlp_out(layer)
            return
        for group in experts.groups:
            yield source.expert_out(layer, group.expert)

    def _neuron_row(self, layer: int, neuron: int) -> np.ndarray:
        """One neuron's W_out row (in a layer of experts, only its expert is read)."""
        source = self._ensure_source()
        experts = self.info.experts(layer)
        if experts is None:
            return source.mlp_out(layer)[neuron]
        expert, local = experts.locate(neuron)
        return source.expert_out(layer, expert)[local]

    # --- tokens ------------------------------------------------------------------------------
    def exact_token_neurons(
        self, token_ids: list[int], layers: list[int], top: int, settings: ScanSettings
    ) -> dict[int, list[TokenNeuron]]:
        """Each token's ``top`` neurons over ``layers`` by exact float64 |dot| (loads the weights)."""
        from engine.scan.token_search import exact_token_neurons

        with self._lock:
            self._ensure_source()
            self.check_unit_layers(layers, settings)
            if settings.units.is_dictionary:  # each feature's direction, already through a CLT's lens

                def blocks(layer: int) -> Iterator[np.ndarray]:
                    yield self._dictionary_rows(layer, settings)[0]

                def transport(layer: int) -> np.ndarray | None:
                    return self._dictionary_rows(layer, settings)[1]
            else:
                blocks = self._w_out_blocks

                def transport(layer: int) -> np.ndarray | None:
                    return self.transport(layer, settings)

            return exact_token_neurons(
                token_ids, layers, blocks, self._unembed(settings), top, settings.projection.cosine, transport
            )

    # --- null baseline -----------------------------------------------------------------------
    def has_null_baseline(self, settings: ScanSettings) -> bool:
        """Whether the baseline is at hand (held, or in the cache): reading it then takes no model."""
        held = (settings.projection, settings.dtype) in self._nulls
        return held or self.products.has(products.NULL, settings)

    def null_baseline(self, settings: ScanSettings) -> NullBaseline:
        memo = (settings.projection, settings.dtype)
        if memo not in self._nulls:
            values = self.products.get(products.NULL, settings)
            if values is None:
                from engine.scan.null_pass import compute_null

                with self._lock:
                    values = compute_null(self._unembed(settings)).values
                self.products.put(products.NULL, values, settings)
            self._nulls[memo] = NullBaseline(values=values)
        return self._nulls[memo]

    # --- the input side ----------------------------------------------------------------------
    def cached_inputs(self, layer: int, settings: ScanSettings) -> LayerInputs | None:
        return self.products.get(products.INPUTS, layer, settings.top_k)

    def inputs(
        self, layer: int, settings: ScanSettings, listener: ProgressListener | None = None
    ) -> LayerInputs:
        """The layer's input side (engine.data.inputs), from the cache or computed from the weights.
        ``listener`` hears "cached", or "loading" (the weights, when not yet loaded), "scanning" as
        the computing starts and "done" with its seconds: minutes over a model, said as they pass."""
        found = self.cached_inputs(layer, settings)
        if found is not None:
            if listener:
                d_mlp = found.cos_out.shape[1]
                listener(ScanProgress("cached", layer, d_mlp, d_mlp))
            return found
        from engine.scan.input_side import layer_inputs

        with self._lock:
            source = self._ensure_source(listener)
            started = time.perf_counter()
            if self._embedding is None:
                self._embedding = source.embedding_rows()
            norm, d_mlp = source.mlp_norm(layer), self.info.width(layer)
            if listener:
                listener(ScanProgress("scanning", layer, 0, d_mlp))
            parts = [
                layer_inputs(layer, mlp_in, norm, w_out, self._embedding, settings.top_k, self.device)
                for mlp_in, w_out in self._input_blocks(layer)
            ]
            found = parts[0] if len(parts) == 1 else LayerInputs.joined(parts)
        self.products.put(products.INPUTS, found, layer, settings.top_k)
        if listener:
            listener(ScanProgress("done", layer, d_mlp, d_mlp, time.perf_counter() - started))
        return found

    def _input_blocks(self, layer: int) -> Iterator[tuple[MlpInputs, np.ndarray]]:
        """A layer's (input rows, W_out rows): the whole layer, or a few experts at a time (about
        ``_INPUT_BLOCK_NEURONS`` neurons: each block reads the embedding once)."""
        source = self._ensure_source()
        experts = self.info.experts(layer)
        if experts is None:
            yield source.mlp_in(layer), source.mlp_out(layer)
            return
        block: list = []
        for index, group in enumerate(experts.groups):
            block.append(group)
            last = index == len(experts.groups) - 1
            if last or sum(g.size for g in block) + experts.groups[index + 1].size > _INPUT_BLOCK_NEURONS:
                ins = [source.expert_in(layer, g.expert) for g in block]
                gates = [i.gate for i in ins if i.gate is not None]
                gate = np.concatenate(gates) if len(gates) == len(ins) else None
                w_out = np.concatenate([source.expert_out(layer, g.expert) for g in block])
                yield MlpInputs(up=np.concatenate([i.up for i in ins]), gate=gate), w_out
                block = []

    # --- a layer of experts' router (engine.data.routing) -------------------------------------
    def routing(self, layer: int, top: int) -> LayerRouting:
        """Which tokens send work to each expert of ``layer``, read on the weights through the
        model's own router (engine.scan.router_side); from the cache, or computed and kept."""
        self.check_layer(layer)
        if self.info.experts(layer) is None:
            raise UserError(f"layer {layer} has no experts: its MLP is dense")
        found = self.products.get(products.ROUTING, layer, top)
        if found is not None:
            return found
        from engine.scan.router_side import layer_routing, router_module

        with self._lock:
            source = self._ensure_source()
            router_weights = source.router(layer)
            if router_weights is None:
                raise UserError(f"layer {layer}'s files hold no router weight")
            router, config = router_module(self.location.path, layer, *router_weights)
            if self._embedding is None:
                self._embedding = source.embedding_rows()
            epsilon = float(
                getattr(config, "rms_norm_eps", None) or getattr(config, "layer_norm_eps", None) or 1e-5
            )
            found = layer_routing(
                layer, self._embedding, source.mlp_norm(layer), epsilon, router, self.info.d_vocab, top
            )
        self.products.put(products.ROUTING, found, layer, top)
        return found

    # --- another checkpoint, neuron by neuron (engine.data.diff) -------------------------------
    def check_comparable(self, other: NeuronEngine) -> None:
        check_comparable(self.info, other.info)
        mine, theirs = self.vocabulary, other.vocabulary
        same = np.array_equal(mine.offsets, theirs.offsets) and np.array_equal(mine.data, theirs.data)
        if not same:
            self.warn(
                f"{self.info.name} and {other.info.name} have different tokenizer files: token ids are "
                "compared as ids, and the strings shown are this model's"
            )

    def cached_diff(self, layer: int, other: NeuronEngine, settings: ScanSettings) -> LayerDiff | None:
        return self.products.get(products.DIFF, other.fingerprint, settings, layer)

    def diff(
        self,
        layer: int,
        other: NeuronEngine,
        settings: ScanSettings,
        listener: ProgressListener | None = None,
    ) -> LayerDiff:
        """Layer ``layer`` of this model against ``other`` (same shapes), neuron by neuron: from the
        cache, or from both scans (each from its own cache or computed) and both weights, one layer
        of each at a time. ``listener`` hears of the layer once, as one piece of work: "cached" when
        the diff is, else both scans' loading and scanning (this model's as the first half) and one
        "done" when the diff is."""
        from engine.scan.layer_diff import PairProgress, layer_diff

        found = self.cached_diff(layer, other, settings)
        if found is not None:
            if listener:
                listener(ScanProgress("cached", layer, found.d_mlp, found.d_mlp))
            return found
        pair = PairProgress(layer, listener)
        mine = self.neurons(layer, settings, listener=pair.first)
        theirs = other.neurons(layer, settings, listener=pair.second)
        # Both models' rows a block at a time (an expert at a time in a layer of experts).
        found = layer_diff(
            self._w_out_blocks(layer), other._w_out_blocks(layer), mine, theirs, settings.top_k
        )
        self.products.put(products.DIFF, found, other.fingerprint, settings, layer)
        pair.done(found.d_mlp)
        return found

    # --- the collection (user data) and exports ------------------------------------------------
    def collection(self, units: Units | None = None) -> Collection:
        """The neurons marked for this model (or the features of a dictionary set's ``units``),
        shared by every explorer and command on this machine."""
        digest = None if units is None else units.digest
        return Collection.for_model(self.info.name, self.fingerprint, dictionary=digest)

    @staticmethod
    def data_directory() -> Path:
        """Where user data lives (collections, fitted dictionaries and lenses, the MCP server's
        exports): ``$NEURON_TUI_DATA_DIR``, else the user's data folder (engine.store.location)."""
        from engine.store.location import default_data_dir

        return default_data_dir()

    def export_metadata(self, settings: ScanSettings) -> dict:
        """What every export says of how it was computed (and through which lens file)."""
        from engine.store.export import export_settings

        metadata = export_settings(self.info, settings)
        lens_file = self.lens_file(settings.lens)
        if lens_file is not None:  # where the lens came from, beside its fingerprint in "lens"
            metadata.update(lens_file=str(lens_file.path), lens_prompts=lens_file.n_prompts)
        return metadata

    def neuron_records(
        self, neurons: LayerNeurons, chosen: Iterable[int] | None, settings: ScanSettings
    ) -> Iterator[dict]:
        """One export record per neuron of ``chosen`` (every neuron when None)."""
        from engine.store.export import neuron_records

        listed = None if chosen is None else list(chosen)
        return neuron_records(self.info.name, self.vocabulary, neurons, listed, k=settings.top_k)

    def collection_records(
        self, collection: Collection, settings: ScanSettings, listener: ProgressListener | None = None
    ) -> Iterator[dict]:
        """One record per marked neuron with its note, layers read from the cache or computed."""
        from engine.store.collection import collection_records

        def layer_neurons(layer: int) -> LayerNeurons:
            return self.neurons(layer, settings, listener=listener)

        return collection_records(self.info.name, self.vocabulary, collection, layer_neurons, settings.top_k)

    def write_records(self, path: str, records: Iterable[dict], metadata: dict) -> int:
        """Records to ``path`` (.jsonl, .json, .csv, a device or pipe, or - for stdout); the count."""
        from engine.store.export import write_records

        return write_records(path, records, metadata)

    def write_rows(self, path: str, rows: list[dict], metadata: dict, key: str) -> int:
        from engine.store.export import write_rows

        return write_rows(path, rows, metadata, key)

    def write_document(self, path: str, document: dict) -> None:
        from engine.store.export import write_document

        write_document(path, document)

    # --- the corpus pass and what it leaves (engine.activations, reached only through here) ---
    @staticmethod
    def corpus(spec: str | None) -> AnyCorpus:
        """The corpus ``spec`` names (a built-in corpus's name, a file, a folder, hf:NAME), or the
        default for None: every check of the files before torch is imported."""
        return load_corpus(spec)

    @staticmethod
    def default_corpus_name() -> str:
        return default_corpus_name()

    @staticmethod
    def builtin_corpora() -> list[tuple[str, str, str]]:
        """The built-in corpora, the default first: (name for --corpus, full name, description)."""
        from engine.activations.builtin_corpora import BUILTIN, description, full_name

        return [(name, full_name(name), description(name)) for name in BUILTIN]

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

    def forget_evidence(
        self, layer: int, corpus_hash: str, settings: ActivationSettings, scan: ScanSettings
    ) -> None:
        """Drop a layer's evidence for these settings (the scales of the windows read stay)."""
        self.evidence_store.forget_evidence(corpus_hash, settings, scan, layer)

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
        split across torchrun's ranks); None on ranks other than 0. With one layer it is that
        layer's pass: the forward pass stops after it once the final norm's scales of the
        windows are known. ``on_landed`` hears the evidence of the tokens read so far as it
        lands (engine.activations.job.ActivationJob); a stopped pass raises ScanCancelled.

        A pass resumes where a stopped one over the same corpus, context and batches left off:
        its own, or one under another token cap that read no more than this cap (the first
        batches of both are the same windows), or one over these layers and more; the evidence
        is then byte for byte a fresh pass's. A checkpoint that read past this cap, or over fewer
        layers, cannot give this pass's evidence exactly: the pass starts afresh and leaves it."""
        from engine.activations.job import ActivationJob
        from engine.runtime.ranks import SINGLE

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
        corpus_hash: str | None = None,
        corpus_name: str | None = None,
        activation: ActivationSettings | None = None,
    ) -> tuple[PromptFiring, dict[tuple[int, int], tuple[int, int]]]:
        """The model on ``text``: per token the ``top`` neurons of each layer that fire hardest
        for themselves (activation relative to each neuron's own scale, engine.data.neuron_scale:
        its corpus quantile when the cache holds evidence of ``corpus_hash`` under ``activation``
        for every layer, by default the default corpus's under the default settings, else this
        text's own), and for each of them the token it promotes most and the one it suppresses
        most (from the layer's scan: ``held`` in memory, else the cache; neurons of layers not
        scanned yet are left out of that map)."""
        from engine.activations.probe import probe_text

        if text.strip():  # (an empty text probes to no rows)
            self.attribution_inputs(text)  # one line for a text longer than the model's context
        if corpus_hash is None:
            corpus_hash, corpus_name = self.known_corpus_hash(default_corpus_name()), default_corpus_name()
        scales = self._probe_scales.for_layers(
            layers, corpus_hash, corpus_name or "the corpus", activation or ActivationSettings(), settings
        )
        bridge, tokenizer, device = self.activation_model()
        with self.run_lock:
            encoders = self._encoders(layers, settings.units, device)
            firing = probe_text(
                bridge, tokenizer, text, layers, top, device, scales, self._layer_experts(layers), encoders
            )
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

    @cached_property
    def _probe_scales(self) -> ProbeScales:
        """The probe's neuron scales, kept by layer (engine.activations.probe_scales)."""
        from engine.activations.probe_scales import ProbeScales

        return ProbeScales(self.evidence_store)

    def probe_layer(self, text: str, layer: int, units: Units | None = None) -> LayerFiring:
        """The model on ``text``, up to ``layer``: every neuron's (or, for a dictionary's
        ``units``, every feature's) activation on every token."""
        from engine.activations.probe import probe_layer

        bridge, tokenizer, device = self.activation_model()
        encoder = self._encoders([layer], units, device).get(layer) if units is not None else None
        with self.run_lock:
            return probe_layer(bridge, tokenizer, text, layer, device, self.info.experts(layer), encoder)

    def _encoders(self, layers: list[int], units: Units, device) -> dict:
        """The dictionaries' encoders of ``layers`` on ``device`` (engine.dictionaries.encoder),
        built once per dictionary and device; none for the neurons."""
        if not units.is_dictionary:
            return {}
        from engine.dictionaries.encoder import Encoder

        found = {}
        for layer in layers:
            key = (units.digest, layer, str(device))
            if key not in self._encoder_memo:
                self._encoder_memo[key] = Encoder(self._dictionary(layer, units), device)
            self._encoder_memo.move_to_end(key)
            found[layer] = self._encoder_memo[key]
        while len(self._encoder_memo) > max(_ENCODERS_KEPT, len(layers)):  # a probe's layers stay
            self._encoder_memo.popitem(last=False)
        return found

    def _layer_experts(self, layers: list[int]) -> dict[int, LayerExperts]:
        """The experts of those of ``layers`` that route through experts."""
        found = {layer: self.info.experts(layer) for layer in layers}
        return {layer: experts for layer, experts in found.items() if experts is not None}

    def refuse_experts(self, layers: list[int], what: str) -> None:
        """One line where ``what`` cannot read a layer of experts yet."""
        routed = sorted(self._layer_experts(layers))
        if routed:
            raise UserError(
                f"{what} reads dense MLP layers only so far, and layer {routed[0]} routes through experts: "
                "use the corpus pass (activations) or the text probe for a layer of experts"
            )

    # --- which neurons made a token (engine.activations.attribution, ablation) ----------------
    def check_neuron(self, layer: int, neuron: int) -> None:
        """Refuse a layer or a neuron the model does not have."""
        self.check_layer(layer)
        d_mlp = self.info.width(layer)
        if not 0 <= neuron < d_mlp:
            raise UserError(f"neuron {neuron} is out of range: layer {layer} has neurons 0-{d_mlp - 1}")

    def attribution_inputs(self, text: str, target: str | None = None) -> tuple[list[int], int | None]:
        """The text's token ids and the target's id (None: the predicted token), checked: one line
        for an empty text, one longer than the model's context, a target that is not one token."""
        from engine.activations.attribution import target_token, text_ids

        if not text.strip():  # before the model is loaded
            raise UserError("the text is empty: give some text")
        bridge, tokenizer, _ = self.activation_model()
        n_ctx = getattr(bridge.cfg, "n_ctx", None)
        ids = text_ids(tokenizer, text, int(n_ctx) if n_ctx else None)
        return ids, None if target is None else target_token(tokenizer, target)

    def attribute(
        self,
        text: str,
        layers: list[int],
        top: int,
        target: str | None = None,
        listener: AttributionListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> TextAttribution:
        """Per position of ``text``, the ``top`` neurons of ``layers`` whose direct logit
        attribution to the target (the predicted token, or ``target``) is largest, the ``top``
        most negative, and the total over every neuron (engine.data.attribution defines them).
        Two forward passes: one to the final norm, one to the deepest layer."""
        from engine.activations.attribution import attribute_text

        self.check_layers(layers)
        self.refuse_experts(layers, "attribution")
        ids, target_id = self.attribution_inputs(text, target)
        bridge, tokenizer, device = self.activation_model()
        return attribute_text(
            bridge, tokenizer, ids, layers, top, target_id, device, self.run_lock, listener, cancelled
        )

    def ablate(
        self,
        text: str,
        layer: int,
        neuron: int,
        target: str | None = None,
        batch_tokens: int = 2048,
        listener: AttributionListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> NeuronAblation:
        """``neuron`` of ``layer`` set to 0 at each position of ``text`` alone, the rest of the
        model recomputed: the change of the target's logit there, beside the weights' prediction
        (−dla). About positions² / 2 tokens of forward passes, ``batch_tokens`` at a time."""
        from engine.activations.ablation import neuron_ablation

        self.check_neuron(layer, neuron)
        self.refuse_experts([layer], "ablation")
        ids, target_id = self.attribution_inputs(text, target)
        bridge, tokenizer, device = self.activation_model()
        return neuron_ablation(
            bridge,
            tokenizer,
            ids,
            layer,
            neuron,
            target_id,
            device,
            batch_tokens,
            self.run_lock,
            listener,
            cancelled,
        )

    # --- several processes ------------------------------------------------------------------
    @staticmethod
    @contextmanager
    def process_ranks() -> Iterator[Ranks]:
        """This process's place among torchrun's ranks (one process without torchrun); the process
        group, if one was started, is stopped at the end."""
        from engine.runtime.distributed import stop
        from engine.runtime.ranks import ranks_from_environment

        ranks = ranks_from_environment()
        try:
            yield ranks
        finally:
            stop(ranks)

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
        here: rank 0 owns the cache); on the other ranks None, once their layers are sent."""
        from engine.runtime import distributed

        device = self.rank_device(ranks)
        self.use_device(device)
        distributed.start(ranks, device)
        owner = {layer: index % ranks.world for index, layer in enumerate(layers)}
        mine = [layer for layer in layers if owner[layer] == ranks.rank]
        if not ranks.is_writer:
            self.products.detach()  # rank 0 owns the cache (on several machines there are several)
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
                self.products.put(products.LAYER, result, layer, settings)
                yield result

        return in_order()

    def close(self) -> None:
        if self._source is not None and hasattr(self._source, "close"):
            self._source.close()
        self.products.close()
