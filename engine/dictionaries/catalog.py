"""From a ``--dictionary PATH`` to the dictionaries it holds: one dictionary (a folder as its library
wrote it, or a Gemma Scope ``params.npz``), or a folder of them (sparsify writes one folder per
hookpoint; a set of SAEs, one per layer, is a folder of folders).

Each is described when found (its config and tensor shapes, checked; engine.dictionaries.files) and
loaded when its layer is used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.data.dictionary import DictionaryInfo
from engine.dictionaries.files import shapes_only
from engine.dictionaries.readers import read_gemma_scope, read_saelens, read_sparsify
from engine.dictionaries.weights import Dictionary
from engine.errors import UserError


@dataclass(frozen=True)
class DictionaryEntry:
    """A dictionary found and checked, not loaded: ``described`` holds its tensors' shapes only."""

    described: Dictionary
    load: Callable[[], Dictionary]

    @property
    def info(self) -> DictionaryInfo:
        return self.described.info

    @property
    def d_out(self) -> int:
        """The width its decoder writes."""
        return int(next(iter(self.described.W_dec.values())).shape[1])


_MAX_DEPTH = 4  # Gemma Scope keeps params.npz three folders below a release's layer folders


def _reader(path: Path):
    """The reader of the dictionary at ``path``, or None where it holds none itself."""
    if path.is_file() and path.suffix == ".npz":
        return read_gemma_scope
    if not path.is_dir():
        return None
    if (path / "params.npz").is_file():
        return lambda folder: read_gemma_scope(folder / "params.npz")
    if (path / "cfg.json").is_file():
        if (path / "sae_weights.safetensors").is_file():
            return read_saelens
        if (path / "sae.safetensors").is_file():
            return read_sparsify
        return _circuit_tracer_or_missing
    from engine.dictionaries.circuit_tracer import holds_circuit_tracer, read_circuit_tracer

    if holds_circuit_tracer(path):
        return read_circuit_tracer
    return None


def _entries(reader, path: Path) -> list[DictionaryEntry]:
    """The dictionaries ``reader`` finds at ``path``, described; each loads alone (a transcoder set
    or a cross-layer transcoder reads only its layer's files)."""
    with shapes_only():
        described = reader(path)
    if not isinstance(described, list):
        return [DictionaryEntry(described, lambda: reader(path))]
    return [DictionaryEntry(one, _layer_loader(reader, path, one.info.layer)) for one in described]


def _layer_loader(reader, path: Path, layer: int) -> Callable[[], Dictionary]:
    return lambda: reader(path, only=layer)[0]


def _circuit_tracer_or_missing(folder: Path) -> Dictionary:
    raise UserError(
        f"{folder} has a cfg.json but no weights: SAELens writes sae_weights.safetensors beside it, "
        "sparsify sae.safetensors"
    )


def find_dictionaries(path: Path) -> list[Dictionary]:
    """Every dictionary at or under ``path``, loaded."""
    return [entry.load() for entry in describe_dictionaries(path)]


def describe_dictionaries(path: Path) -> list[DictionaryEntry]:
    """Every dictionary at or under ``path``, described; one line if there is none or one is damaged."""
    if not path.exists():
        raise UserError(
            f"no dictionary at {path}: give a dictionary's folder, a params.npz or a folder of them"
        )
    found: list[DictionaryEntry] = []
    _collect(path, 0, found)
    if not found:
        raise UserError(
            f"no dictionary found in {path}: expected SAELens (cfg.json + sae_weights.safetensors), "
            "sparsify (cfg.json + sae.safetensors), circuit-tracer transcoders or Gemma Scope params.npz"
        )
    return found


def _collect(path: Path, depth: int, found: list[DictionaryEntry]) -> None:
    reader = _reader(path)
    if reader is not None:
        found.extend(_entries(reader, path))
        return
    if path.is_dir() and depth < _MAX_DEPTH:
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):  # a trainer's state (engine.dictionaries.fit), not a dictionary
                continue
            if child.is_dir() or child.suffix == ".npz":
                _collect(child, depth + 1, found)
