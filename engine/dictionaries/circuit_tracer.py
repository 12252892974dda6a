"""circuit-tracer's transcoders (per-layer and cross-layer), as circuit-tracer writes and loads them."""

from __future__ import annotations

from pathlib import Path

from engine.dictionaries.weights import Dictionary


def holds_circuit_tracer(path: Path) -> bool:
    return False


def read_circuit_tracer(path: Path) -> list[Dictionary]:
    raise NotImplementedError
