"""The dictionary sets one model is read through: opened from ``--dictionary`` paths, checked
against the model's shapes, named by their files' fingerprint (the cache key of their results)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.dictionary import DictionaryInfo
from engine.dictionaries.catalog import DictionaryEntry, describe_dictionaries
from engine.dictionaries.hooks import check_hook_layers
from engine.dictionaries.weights import Dictionary
from engine.errors import UserError
from engine.runtime.fingerprint import files_fingerprint
from engine.settings import NEURONS, Units

# Sites whose width is the residual stream's: a decoder writing elsewhere is no vocabulary direction.
_RESIDUAL_SITES = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_mlp_out",
    "mlp.hook_out",
    "hook_attn_out",
)


LOADED = 4  # dictionaries held in memory at once: a set may cover every layer of a large model


@dataclass(frozen=True)
class DictionarySet:
    """The dictionaries opened together, at most one per layer: described when opened, each loaded
    when its layer is used (the ``LOADED`` used last are kept)."""

    name: str
    digest: str
    by_layer: dict[int, DictionaryEntry]
    _loaded: OrderedDict = field(default_factory=OrderedDict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def infos(self) -> dict[int, DictionaryInfo]:
        return {layer: entry.info for layer, entry in sorted(self.by_layer.items())}

    @property
    def layers(self) -> list[int]:
        return sorted(self.by_layer)

    def check(self, layer: int) -> None:
        if layer not in self.by_layer:
            have = ", ".join(str(n) for n in self.layers)
            raise UserError(
                f"the dictionary set {self.name} has no dictionary at layer {layer}: it has layers {have}"
            )

    def at(self, layer: int) -> Dictionary:
        """The layer's dictionary, loaded (from memory when it was used lately)."""
        self.check(layer)
        with self._lock:
            if layer in self._loaded:
                self._loaded.move_to_end(layer)
                return self._loaded[layer]
            loaded = self.by_layer[layer].load()
            self._loaded[layer] = loaded
            while len(self._loaded) > LOADED:
                self._loaded.popitem(last=False)
            return loaded


def open_set(
    paths: list[Path], d_model: int | None, n_layers: int | None, d_mlp: int | None
) -> DictionarySet:
    """Every dictionary under ``paths``, checked: hooks the model has, widths that match it, one per
    layer. Each failure is one line naming the dictionary and the field."""
    found = [entry for path in paths for entry in describe_dictionaries(path)]
    by_layer: dict[int, DictionaryEntry] = {}
    for entry in found:
        check_shapes(entry.info, d_model, n_layers, d_mlp)
        if d_model is not None and entry.d_out != d_model:
            raise UserError(
                f"the dictionary {entry.info.name} writes {entry.d_out} dimensions at {entry.info.hook_out}, "
                f"where this model's residual stream has {d_model}: give a dictionary trained on this model"
            )
        other = by_layer.get(entry.info.layer)
        if other is not None:
            raise UserError(
                f"two dictionaries read layer {entry.info.layer} ({other.info.name} and "
                f"{entry.info.name}): open one of them at a time with --dictionary"
            )
        by_layer[entry.info.layer] = entry
    files = sorted({file.resolve() for entry in found for file in entry.described.files})
    root = Path("/")
    digest = files_fingerprint(files, root)
    name = paths[0].resolve().name if len(paths) == 1 else "+".join(p.resolve().name for p in paths)
    return DictionarySet(name or "dictionary", digest, by_layer)


def check_shapes(info: DictionaryInfo, d_model: int | None, n_layers: int | None, d_mlp: int | None) -> None:
    check_hook_layers(
        {
            f"the dictionary {info.name} reads at": info.hook_in,
            f"the dictionary {info.name} writes to": info.hook_out,
        },
        n_layers,
    )
    if n_layers is not None and any(layer >= n_layers for layer in info.writes_to):
        raise UserError(f"the dictionary {info.name} writes to layers beyond this model's {n_layers}")
    in_width = d_mlp if info.hook_in.endswith("mlp.hook_post") else d_model
    if in_width is not None and info.d_in != in_width:
        raise UserError(
            f"the dictionary {info.name} reads {info.d_in} dimensions (its config's d_in) at "
            f"{info.hook_in}, where this model has {in_width}: give a dictionary trained on this model"
        )
    if not info.hook_out.endswith(_RESIDUAL_SITES):
        raise UserError(
            f"the dictionary {info.name} writes to {info.hook_out}, not the residual stream: its "
            "decoder rows are no directions of the vocabulary"
        )


class DictionaryShelf:
    """The dictionary sets opened for one model, by fingerprint."""

    def __init__(self) -> None:
        self.opened: dict[str, DictionarySet] = {}

    def open(self, paths: list[Path], d_model: int | None, n_layers: int | None, d_mlp: int | None) -> Units:
        found = open_set(paths, d_model, n_layers, d_mlp)
        self.opened[found.digest] = found
        return Units(found.digest, found.name)

    def get(self, units: Units) -> DictionarySet | None:
        """The set behind ``units`` (None for the neurons)."""
        if units == NEURONS or units.digest is None:
            return None
        if units.digest not in self.opened:
            raise UserError(
                f"the dictionary set {units.label} is not open here: pass it with --dictionary PATH"
            )
        return self.opened[units.digest]
