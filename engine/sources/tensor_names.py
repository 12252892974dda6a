"""Which checkpoint tensors a scan reads, named by TransformerLens 4's architecture adapters.

Asking the adapter needs TransformerLens and transformers imported and a bridge configuration
built: seconds before the first tensor is read, for an answer that only depends on the
architecture, the checkpoint's config.json and the TransformerLens version. The answer is kept in
the result cache under that triple, so that a second scan of a checkpoint (or of another checkpoint
with the same config) names its tensors from the cache and imports neither library.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

from engine.errors import UserError, first_line
from engine.sources.expert_tensors import EXPERT_COUNT_KEYS

_FORMAT = 3  # bump when the fields below change meaning


@dataclass(frozen=True)
class TensorNames:
    """Module names from the adapter's component mapping, and the shapes config.json implies."""

    top: dict[str, str]  # top-level components: blocks, mlp, ln_final, unembed, embed
    mlp: dict[str, str]  # the MLP's submodules: out, and in / gate where the MLP has them
    block: dict[str, str]  # a block's submodules: ln1, ln2 (the norm before the MLP), attn, mlp
    normalization: str  # TransformerLens's normalization_type: RMS, LN, ...
    d_model: int
    d_mlp: int
    n_layers: int


def _transformer_lens_version() -> str:
    try:
        return metadata.version("transformer_lens")
    except metadata.PackageNotFoundError:
        return "absent"


class NamesStore(Protocol):
    """Where answers are kept, by the digest ``names_key`` gives (the result cache's TENSOR_NAMES
    product, engine.store.products)."""

    def get(self, digest: str) -> dict | None: ...

    def put(self, value: dict, digest: str, /) -> None: ...


def names_key(architecture: str, config_bytes: bytes) -> str:
    digest = hashlib.sha256()
    for part in (str(_FORMAT), _transformer_lens_version(), architecture):
        digest.update(part.encode() + b"\0")
    digest.update(config_bytes)
    return digest.hexdigest()[:32]


def tensor_names(model_dir: Path, architecture: str, store: NamesStore | None) -> TensorNames:
    """The names for ``model_dir``, from ``store`` when an earlier run kept them there."""
    key = names_key(architecture, (model_dir / "config.json").read_bytes())
    stored = _parse(store.get(key)) if store is not None else None
    if stored is not None:
        return stored
    names = names_from_adapter(model_dir, architecture)
    if store is not None:
        store.put(asdict(names), key)
    return names


def _parse(data) -> TensorNames | None:
    """A kept answer, or None when there is none or it is not one (it is then asked again)."""
    try:
        names = TensorNames(**{field: data[field] for field in TensorNames.__dataclass_fields__})
    except (KeyError, TypeError):
        return None
    well_formed = (
        isinstance(names.top, dict)
        and isinstance(names.mlp, dict)
        and isinstance(names.block, dict)
        and "out" in names.mlp
        and all(isinstance(size, int) and size > 0 for size in (names.d_model, names.d_mlp, names.n_layers))
    )
    return names if well_formed else None


def names_from_adapter(model_dir: Path, architecture: str) -> TensorNames:
    """Ask TransformerLens's adapter for ``architecture``; a UserError when it has none."""
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    from transformers import AutoConfig

    try:
        from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
        from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_config_from_hf
    except ImportError as error:  # the builder is private to TransformerLens: its place may move
        raise UserError(
            f"this TransformerLens cannot name checkpoint tensors ({error}); use --loader bridge"
        ) from None
    hf_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    try:
        # dtype None: TransformerLens's default (the tensors are not built, only named)
        cfg = build_bridge_config_from_hf(hf_config, architecture, architecture, None)  # type: ignore[arg-type]
        mapping = ArchitectureAdapterFactory.select_architecture_adapter(cfg).get_component_mapping()
    except Exception as error:
        first = first_line(error)
        raise UserError(f"TransformerLens has no adapter for {architecture}: {first}") from None
    top = {key: str(component.name) for key, component in mapping.items() if getattr(component, "name", None)}
    blocks = mapping.get("blocks")
    mlp = getattr(blocks, "submodules", {}).get("mlp") if blocks is not None else None
    routed = _first(hf_config, *EXPERT_COUNT_KEYS)
    if mlp is None or ("out" not in getattr(mlp, "submodules", {}) and not routed):
        raise UserError(f"{architecture} has no dense MLP output projection that neuron-tui can read")
    top["mlp"] = mlp.name
    d_model = int(_first(hf_config, "hidden_size", "n_embd", "d_model"))
    return TensorNames(
        top=top,
        mlp=_dense_names(mlp.submodules) if routed else {key: c.name for key, c in mlp.submodules.items()},
        block={key: str(component.name) for key, component in getattr(blocks, "submodules", {}).items()},
        normalization=str(getattr(cfg, "normalization_type", "") or ""),
        d_model=d_model,
        d_mlp=int(_first(hf_config, "intermediate_size", "n_inner", "ffn_dim") or 4 * d_model),
        n_layers=int(_first(hf_config, "num_hidden_layers", "n_layer", "num_layers")),
    )


def _dense_names(submodules: dict) -> dict[str, str]:
    """The dense MLP's projections in a model whose MLP routes through experts (its dense layers,
    Qwen3-MoE's ``mlp_only_layers``); the experts themselves are read from the files
    (engine.sources.expert_tensors). The adapter's ``gate`` there is the router, not gate_proj."""
    names = {"out": "down_proj", "in": "up_proj", "gate": "gate_proj"}
    for key, dense_key in (("out", "dense_out"), ("in", "dense_in"), ("gate", "dense_gate")):
        if dense_key in submodules:
            names[key] = str(submodules[dense_key].name)
    return names


def _first(config, *names: str):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None
