"""From a ``--dictionary PATH`` to the dictionaries it holds: one dictionary (a folder as its library
wrote it, or a Gemma Scope ``params.npz``), or a folder of them (sparsify writes one folder per
hookpoint; a set of SAEs, one per layer, is a folder of folders)."""

from __future__ import annotations

from pathlib import Path

from engine.dictionaries.readers import read_gemma_scope, read_saelens, read_sparsify
from engine.dictionaries.weights import Dictionary
from engine.errors import UserError

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


def _circuit_tracer_or_missing(folder: Path) -> Dictionary:
    raise UserError(
        f"{folder} has a cfg.json but no weights: SAELens writes sae_weights.safetensors beside it, "
        "sparsify sae.safetensors"
    )


def find_dictionaries(path: Path) -> list[Dictionary]:
    """Every dictionary at or under ``path``, read; one line if there is none or one is damaged."""
    if not path.exists():
        raise UserError(
            f"no dictionary at {path}: give a dictionary's folder, a params.npz or a folder of them"
        )
    found: list[Dictionary] = []
    _collect(path, 0, found)
    if not found:
        raise UserError(
            f"no dictionary found in {path}: expected SAELens (cfg.json + sae_weights.safetensors), "
            "sparsify (cfg.json + sae.safetensors), circuit-tracer transcoders or Gemma Scope params.npz"
        )
    return found


def _collect(path: Path, depth: int, found: list[Dictionary]) -> None:
    reader = _reader(path)
    if reader is not None:
        read = reader(path)
        found.extend(read if isinstance(read, list) else [read])
        return
    if path.is_dir() and depth < _MAX_DEPTH:
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):  # a trainer's state (engine.dictionaries.fit), not a dictionary
                continue
            if child.is_dir() or child.suffix == ".npz":
                _collect(child, depth + 1, found)
