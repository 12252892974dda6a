"""One reader per library's format, each to a ``Dictionary`` (engine.dictionaries.weights).

- SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (``W_enc`` [d_in, d_sae], ``W_dec``
  [d_sae, d_out]); the architecture and the hooks are in the config (``metadata.hook_name`` and,
  for a transcoder, ``metadata.hook_name_out``; older files keep them at the top level).
- EleutherAI sparsify: ``cfg.json`` + ``sae.safetensors`` per hookpoint folder (``encoder.weight``
  [num_latents, d_in], ``W_dec`` [num_latents, d_out]); the folder's name is the hookpoint.
- Gemma Scope: ``params.npz`` (``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``threshold``):
  JumpReLU SAEs whose hook is named by the folders they are published in (``layer_L``), read as
  the residual stream after block L unless the path says ``mlp`` or ``att``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engine.data.dictionary import DictionaryInfo
from engine.dictionaries.files import contiguous, field, read_json, read_npz, read_safetensors, tensor
from engine.dictionaries.hooks import hook_layer, sparsify_hooks
from engine.dictionaries.weights import Activation, Dictionary
from engine.errors import UserError

# SAELens's architecture names: (kind, activation)
SAELENS_ARCHITECTURES = {
    "standard": ("sae", "relu"),
    "topk": ("sae", "topk"),
    "jumprelu": ("sae", "jumprelu"),
    "gated": ("sae", "gated"),
    "transcoder": ("transcoder", "relu"),
    "skip_transcoder": ("skip-transcoder", "relu"),
    "jumprelu_transcoder": ("transcoder", "jumprelu"),
    "jumprelu_skip_transcoder": ("skip-transcoder", "jumprelu"),
}
INPUT_NORMS = ("none", "constant_norm_rescale", "layer_norm")
# Normalisations SAELens's trainer folds into the weights before saving: nothing to do at inference.
FOLDED_NORMS = ("expected_average_only_in", "covariance_whitening")


def _hook(config: dict, name: str) -> str | None:
    found_metadata = config.get("metadata")
    metadata: dict = found_metadata if isinstance(found_metadata, dict) else {}
    found = metadata.get(name) or config.get(name)
    return found if isinstance(found, str) else None


def read_saelens(folder: Path) -> Dictionary:
    path = folder / "cfg.json"
    config = read_json(path)
    architecture = field(config, "architecture", path, str)
    if architecture not in SAELENS_ARCHITECTURES:
        known = ", ".join(SAELENS_ARCHITECTURES)
        raise UserError(
            f"the dictionary config {path}: architecture {architecture!r} is not read here: use {known}"
        )
    kind, act = SAELENS_ARCHITECTURES[architecture]
    d_in, d_sae = field(config, "d_in", path), field(config, "d_sae", path)
    d_out = field(config, "d_out", path) if kind != "sae" else d_in
    hook_in = _hook(config, "hook_name")
    if hook_in is None:
        raise UserError(f"the dictionary config {path} has no 'hook_name' (in 'metadata')")
    hook_out = _hook(config, "hook_name_out") if kind != "sae" else hook_in
    if hook_out is None:
        raise UserError(f"the dictionary config {path} has no 'hook_name_out' (in 'metadata')")
    layer = hook_layer(hook_in, f"the dictionary config {path}: hook_name")
    hook_layer(hook_out, f"the dictionary config {path}: hook_name_out")
    norm = config.get("normalize_activations", "none") or "none"
    norm = "none" if norm in FOLDED_NORMS else norm
    if config.get("reshape_activations", "none") not in ("none", None):
        raise UserError(
            f"the dictionary config {path}: reshape_activations {config['reshape_activations']!r} "
            "(attention heads) is not read here: only dictionaries of the residual stream and the MLP"
        )
    if norm not in INPUT_NORMS:
        raise UserError(
            f"the dictionary config {path}: normalize_activations {norm!r} is not read here: use "
            f"{', '.join(INPUT_NORMS)} (fold a scaling factor into the weights first)"
        )
    weights = folder / "sae_weights.safetensors"
    tensors = read_safetensors(weights)
    activation = _saelens_activation(act, config, tensors, d_sae, weights, path)
    b_enc = (
        np.zeros(d_sae, dtype=np.float32) if act == "gated" else tensor(tensors, "b_enc", (d_sae,), weights)
    )
    info = DictionaryInfo(
        folder.name,
        layer,
        "saelens",
        kind,
        act,
        hook_in,
        hook_out,
        d_in,
        d_sae,
        (hook_layer(hook_out, "hook_name_out"),),
    )
    return Dictionary(
        info,
        tensor(tensors, "W_enc", (d_in, d_sae), weights),
        b_enc,
        {info.writes_to[0]: tensor(tensors, "W_dec", (d_sae, d_out), weights)},
        tensor(tensors, "b_dec", (d_out,), weights),
        activation,
        subtract_b_dec=bool(config.get("apply_b_dec_to_input", kind == "sae")) and kind == "sae",
        input_norm=norm,
        W_skip=tensor(tensors, "W_skip", (d_out, d_in), weights) if kind == "skip-transcoder" else None,
        files=(path, weights),
    )


def _saelens_activation(
    act: str, config: dict, tensors: dict[str, np.ndarray], d_sae: int, weights: Path, path: Path
) -> Activation:
    if act == "topk":
        return Activation(
            "topk",
            k=_k(field(config, "k", path), d_sae, path),
            rescale_by_decoder_norm=bool(config.get("rescale_acts_by_decoder_norm", False)),
        )
    if act == "jumprelu":
        return Activation("jumprelu", threshold=tensor(tensors, "threshold", (d_sae,), weights))
    if act == "gated":
        return Activation(
            "gated",
            b_gate=tensor(tensors, "b_gate", (d_sae,), weights),
            r_mag=tensor(tensors, "r_mag", (d_sae,), weights),
            b_mag=tensor(tensors, "b_mag", (d_sae,), weights),
        )
    return Activation("relu")


def read_sparsify(folder: Path) -> Dictionary:
    path = folder / "cfg.json"
    config = read_json(path)
    d_in = field(config, "d_in", path)
    transcode = bool(config.get("transcode", False))
    act = config.get("activation", "topk")
    if act not in ("topk", "groupmax"):
        raise UserError(
            f"the dictionary config {path}: activation {act!r} is not read here: use topk or groupmax"
        )
    k = field(config, "k", path)
    weights = folder / "sae.safetensors"
    tensors = read_safetensors(weights)
    if "encoder.weight" not in tensors:
        raise UserError(f"the dictionary's weights {weights} have no tensor 'encoder.weight'")
    d_sae = int(tensors["encoder.weight"].shape[0])
    configured = config.get("num_latents") or d_in * int(config.get("expansion_factor", 0) or 0)
    if configured and configured != d_sae:
        raise UserError(f"the dictionary config {path} says {configured} latents, its weights hold {d_sae}")
    hook_in, hook_out = sparsify_hooks(folder.name, transcode)
    kind = "transcoder" if transcode else "sae"
    skip = bool(config.get("skip_connection", False))
    info = DictionaryInfo(
        folder.name,
        hook_layer(hook_in, "hookpoint"),
        "sparsify",
        "skip-transcoder" if skip else kind,
        act,
        hook_in,
        hook_out,
        d_in,
        d_sae,
        (hook_layer(hook_out, "hookpoint"),),
    )
    return Dictionary(
        info,
        contiguous(tensor(tensors, "encoder.weight", (d_sae, d_in), weights).T),
        tensor(tensors, "encoder.bias", (d_sae,), weights),
        {info.writes_to[0]: tensor(tensors, "W_dec", (d_sae, d_in), weights)},
        tensor(tensors, "b_dec", (d_in,), weights),
        Activation(act, k=_k(k, d_sae, path, groups=act == "groupmax")),
        subtract_b_dec=not transcode,
        # sparsify adds x @ W_skip.mT: W_skip is [d_out, d_in], as SAELens's skip transcoders
        W_skip=tensor(tensors, "W_skip", (d_in, d_in), weights) if skip else None,
        files=(path, weights),
    )


def _k(k: int, d_sae: int, path: Path, groups: bool = False) -> int:
    """A top-k (or group-max) ``k`` the dictionary's width allows, or one line naming it."""
    if k > d_sae:
        raise UserError(f"the dictionary config {path}: 'k' is {k}, more than its {d_sae} features")
    if groups and d_sae % k:
        raise UserError(f"the dictionary config {path}: 'k' {k} groups do not divide its {d_sae} features")
    return k


_LAYER = re.compile(r"layer_(\d+)")


def read_gemma_scope(path: Path) -> Dictionary:
    tensors = read_npz(path)
    if "W_enc" not in tensors:
        raise UserError(f"the dictionary's weights {path} have no tensor 'W_enc'")
    d_in, d_sae = (int(n) for n in tensors["W_enc"].shape)
    layers = [int(found) for found in _LAYER.findall(str(path.resolve()))]
    if not layers:
        raise UserError(
            f"cannot tell the layer of the Gemma Scope dictionary {path}: keep it under a folder "
            "named layer_L, as Gemma Scope publishes it"
        )
    where = str(path.resolve()).lower()
    if "att" in where:
        raise UserError(
            f"{path}: Gemma Scope's attention dictionaries (hook_z) are not read here, only res and mlp"
        )
    hook = f"blocks.{layers[-1]}.{'hook_mlp_out' if 'mlp' in where else 'hook_resid_post'}"
    name = "/".join(path.resolve().parts[-4:-1])
    layer = layers[-1]
    info = DictionaryInfo(name, layer, "gemma-scope", "sae", "jumprelu", hook, hook, d_in, d_sae, (layer,))
    return Dictionary(
        info,
        tensor(tensors, "W_enc", (d_in, d_sae), path),
        tensor(tensors, "b_enc", (d_sae,), path),
        {layers[-1]: tensor(tensors, "W_dec", (d_sae, d_in), path)},
        tensor(tensors, "b_dec", (d_in,), path),
        Activation("jumprelu", threshold=tensor(tensors, "threshold", (d_sae,), path)),
        subtract_b_dec=False,
        files=(path,),
    )
