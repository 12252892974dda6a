"""circuit-tracer's transcoders, as its ``to_safetensors`` writes them and its loaders read them.

A folder with ``config.yaml`` (``model_kind``: ``transcoder_set`` or ``cross_layer_transcoder``;
``feature_input_hook`` / ``feature_output_hook``: TransformerLens hook names within a block, e.g.
``mlp.hook_in`` -> ``mlp.hook_out``) and, per layer i:

- a transcoder set (one transcoder per layer): ``layer_{i}.safetensors`` with ``W_enc``
  [d_transcoder, d_model] (``F.linear``'s orientation), ``W_dec`` [d_transcoder, d_model],
  ``b_enc``, ``b_dec``, ``activation_function.threshold`` (JumpReLU; ReLU without it) and
  ``W_skip`` [d_model, d_model] (applied as x @ W_skip.T) where it has one;
- a cross-layer transcoder: ``W_enc_{i}.safetensors`` (``W_enc_{i}``, ``b_enc_{i}``, ``b_dec_{i}``
  the bias of target layer i, ``threshold_{i}``) and ``W_dec_{i}.safetensors`` with ``W_dec_{i}``
  [d_transcoder, n_layers - i, d_model]: the features read at layer i write to layers i..n-1.

circuit-tracer's JumpReLU is pre * (pre > threshold), without a ReLU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.dictionary import DictionaryInfo
from engine.dictionaries.files import contiguous, read_one, read_safetensors, tensor
from engine.dictionaries.hooks import hook_layer
from engine.dictionaries.weights import Activation, Dictionary
from engine.errors import UserError

KINDS = ("transcoder_set", "cross_layer_transcoder")


def _config(folder: Path) -> dict | None:
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise UserError(f"cannot read the dictionary config {path}: {error}") from None
    return config if isinstance(config, dict) else None


def holds_circuit_tracer(path: Path) -> bool:
    if not path.is_dir():
        return False
    config = _config(path)
    return config is not None and config.get("model_kind") in KINDS


def _hooks(config: dict, folder: Path, layer: int) -> tuple[str, str]:
    found = []
    for field in ("feature_input_hook", "feature_output_hook"):
        hook = config.get(field)
        if not isinstance(hook, str):
            raise UserError(f"the dictionary config {folder / 'config.yaml'} has no {field!r}")
        full = hook if hook.startswith("blocks.") else f"blocks.{layer}.{hook}"
        hook_layer(full, field)
        found.append(full)
    return found[0], found[1]


def read_circuit_tracer(folder: Path, only: int | None = None) -> list[Dictionary]:
    """Every layer's transcoder in ``folder``, or only layer ``only``'s (its files alone read)."""
    config = _config(folder) or {}
    if config.get("model_kind") == "cross_layer_transcoder":
        return _read_clt(folder, config, only)
    files = sorted(folder.glob("layer_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise UserError(f"the transcoder set {folder} has no layer_N.safetensors")
    layers = [(int(file.stem.split("_")[1]), file) for file in files]
    return [_read_layer(folder, config, layer, file) for layer, file in layers if only in (None, layer)]


def _read_layer(folder: Path, config: dict, layer: int, file: Path) -> Dictionary:
    tensors = read_safetensors(file)
    if "W_enc" not in tensors:
        raise UserError(f"the dictionary's weights {file} have no tensor 'W_enc'")
    d_sae, d_in = (int(n) for n in tensors["W_enc"].shape)
    hook_in, hook_out = _hooks(config, folder, layer)
    threshold = tensors.get("activation_function.threshold")
    skip = "W_skip" in tensors
    info = DictionaryInfo(
        f"{folder.name}/layer_{layer}",
        layer,
        "circuit-tracer",
        "skip-transcoder" if skip else "transcoder",
        "relu" if threshold is None else "jumprelu",
        hook_in,
        hook_out,
        d_in,
        d_sae,
        (layer,),
    )
    return Dictionary(
        info,
        contiguous(tensor(tensors, "W_enc", (d_sae, d_in), file).T),
        tensor(tensors, "b_enc", (d_sae,), file),
        {layer: tensor(tensors, "W_dec", (d_sae, d_in), file)},
        tensor(tensors, "b_dec", (d_in,), file),
        _activation(threshold, d_sae, file),
        W_skip=tensor(tensors, "W_skip", (d_in, d_in), file) if skip else None,
        files=(folder / "config.yaml", file),
    )


def _activation(threshold: np.ndarray | None, d_sae: int, file: Path) -> Activation:
    if threshold is None:
        return Activation("relu")
    if threshold.shape != (d_sae,):
        raise UserError(f"the dictionary's weights {file}: the threshold has shape {list(threshold.shape)}")
    return Activation("jumprelu", threshold=contiguous(threshold), relu_in_jump=False)


def _read_clt(folder: Path, config: dict, only: int | None) -> list[Dictionary]:
    n_layers = len(list(folder.glob("W_enc_*.safetensors")))
    if n_layers == 0:
        raise UserError(f"the cross-layer transcoder {folder} has no W_enc_N.safetensors")
    layers = range(n_layers) if only is None else [only]
    first = min(layers)
    # Each target layer's bias sits with the encoder of that layer.
    biases = {i: read_one(folder / f"W_enc_{i}.safetensors", f"b_dec_{i}") for i in range(first, n_layers)}
    encoders = {i: read_safetensors(folder / f"W_enc_{i}.safetensors") for i in layers}
    return [_read_clt_layer(folder, config, i, n_layers, encoders[i], biases) for i in layers]


def _read_clt_layer(
    folder: Path, config: dict, layer: int, n_layers: int, encoder: dict, biases: dict
) -> Dictionary:
    enc_file, dec_file = folder / f"W_enc_{layer}.safetensors", folder / f"W_dec_{layer}.safetensors"
    if f"W_enc_{layer}" not in encoder:
        raise UserError(f"the dictionary's weights {enc_file} have no tensor 'W_enc_{layer}'")
    d_sae, d_in = (int(n) for n in encoder[f"W_enc_{layer}"].shape)
    decoder = tensor(read_safetensors(dec_file), f"W_dec_{layer}", (d_sae, n_layers - layer, d_in), dec_file)
    hook_in, hook_out = _hooks(config, folder, layer)
    threshold = encoder.get(f"threshold_{layer}")
    info = DictionaryInfo(
        f"{folder.name}/layer_{layer}",
        layer,
        "circuit-tracer",
        "clt",
        "relu" if threshold is None else "jumprelu",
        hook_in,
        hook_out,
        d_in,
        d_sae,
        tuple(range(layer, n_layers)),
    )
    return Dictionary(
        info,
        contiguous(tensor(encoder, f"W_enc_{layer}", (d_sae, d_in), enc_file).T),
        tensor(encoder, f"b_enc_{layer}", (d_sae,), enc_file),
        {layer + j: contiguous(decoder[:, j, :]) for j in range(n_layers - layer)},
        biases[layer],
        _activation(threshold, d_sae, enc_file),
        b_dec_out={target: biases[target] for target in range(layer, n_layers)},
        files=(folder / "config.yaml", enc_file, dec_file),
    )
