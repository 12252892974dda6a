"""Lens files: TransformerLens's Jacobian lens artifact, opened and checked without the model.

The format (shared with Anthropic's reference implementation and the published lenses) is a
``torch.save`` of ``{"J": {layer: [d_model, d_model]}, "n_prompts", "source_layers", "d_model",
"metadata"?}``; a reference fit checkpoint (``jacobian_sum`` + ``n_done``) is read through
TransformerLens's own loader. Opening reads the file once (``weights_only``: a lens file cannot run
code), checks it, and keeps the matrices as float64 arrays (exact from fp16 or fp32), so a bad
file fails in one line before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError, first_line
from engine.runtime.fingerprint import file_fingerprint


@dataclass(frozen=True)
class LensFile:
    path: Path
    digest: str  # content fingerprint: the cache key of everything read through this lens
    d_model: int
    n_prompts: int
    matrices: dict[int, np.ndarray] = field(repr=False)  # layer -> float64 [d_model, d_model]
    metadata: dict = field(default_factory=dict, repr=False)

    @property
    def source_layers(self) -> list[int]:
        return sorted(self.matrices)

    @property
    def description(self) -> str:
        """One line for a user: where it came from and what it was fitted on."""
        corpus = self.metadata.get("corpus")
        fitted = f", fitted on {self.n_prompts} prompts" + (f" of {corpus}" if corpus else "")
        return f"Jacobian lens {self.path.name} ({self.digest[:12]}{fitted if self.n_prompts else ''})"

    def check_model(self, d_model: int, n_layers: int) -> None:
        """Refuse a lens of another model: another width, or layers the model does not have below
        its last (whose transport is the identity)."""
        if d_model != self.d_model:
            raise UserError(
                f"the lens {self.path} was fitted for d_model {self.d_model}, but this model has "
                f"d_model {d_model}: use a lens fitted for this model (neuron-tui lens fit)"
            )
        beyond = [layer for layer in self.source_layers if not 0 <= layer < n_layers - 1]
        if beyond:
            raise UserError(
                f"the lens {self.path} has matrices for layers {beyond}, outside this model's "
                f"0-{n_layers - 2}: it belongs to another model"
            )

    def transport(self, layer: int, n_layers: int) -> np.ndarray | None:
        """J_l as float64, or None for the last layer (the identity)."""
        if layer == n_layers - 1:
            return None
        if layer not in self.matrices:
            raise UserError(
                f"the lens {self.path} has no matrix for layer {layer} (it has "
                f"{_ranges(self.source_layers)}): fit one with every layer (neuron-tui lens fit)"
            )
        return self.matrices[layer]


def _ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    spans: list[list[int]] = []
    for layer in layers:
        if spans and spans[-1][1] == layer - 1:
            spans[-1][1] = layer
        else:
            spans.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"


def open_lens_file(path: Path) -> LensFile:
    """Read and check a lens file; a missing, unreadable or malformed one fails in one line."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"no lens file at {path}: give the path of a Jacobian lens .pt file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise UserError(
            f"cannot read the lens file {path}: it is not a torch.save file of tensors and plain values "
            f"({type(error).__name__})"
        ) from error
    if not isinstance(payload, dict):
        raise UserError(f"{path} is not a Jacobian lens file: expected a dict with a 'J' key")
    try:
        if "J" in payload:
            raw, n_prompts, d_model = payload["J"], int(payload.get("n_prompts", 0)), int(payload["d_model"])
            metadata = payload.get("metadata") or {}
        elif "jacobian_sum" in payload:  # a reference fit checkpoint: TransformerLens reads it
            from transformer_lens.tools.analysis import JacobianLens

            lens = JacobianLens.load(str(path))
            raw, n_prompts, d_model, metadata = lens.jacobians, lens.n_prompts, lens.d_model, lens.metadata
        else:
            raise UserError(
                f"{path} is not a Jacobian lens file: it has neither a 'J' key (a lens artifact) "
                "nor a 'jacobian_sum' key (a fit checkpoint)"
            )
        matrices = {int(layer): _matrix(matrix, d_model, path, int(layer)) for layer, matrix in raw.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path} is not a readable Jacobian lens file: {first_line(error)}") from error
    if not matrices:
        raise UserError(f"the lens file {path} holds no matrices")
    return LensFile(path, file_fingerprint(path), d_model, n_prompts, matrices, dict(metadata))


def _matrix(matrix, d_model: int, path: Path, layer: int) -> np.ndarray:
    import torch

    if not isinstance(matrix, torch.Tensor) or tuple(matrix.shape) != (d_model, d_model):
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise UserError(
            f"the lens file {path} has a layer-{layer} matrix of {shape}, not {d_model}x{d_model}"
        )
    wide = matrix.detach().to(torch.float64).numpy()
    if not np.isfinite(wide).all():
        raise UserError(f"the lens file {path} has non-finite values in layer {layer}'s matrix")
    return wide
