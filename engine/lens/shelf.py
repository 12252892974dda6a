"""The lenses one model is read through: which are open, how a spec names one, the fits kept here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.lens.artifact import LensFile, open_lens_file
from engine.lens.store import fitted_lenses
from engine.settings import LOGIT_LENS, Lens


class LensShelf:
    """The Jacobian lenses opened for one model (by weights fingerprint), by file fingerprint."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.opened: dict[str, LensFile] = {}

    def fitted(self) -> list[Path]:
        """The lenses fitted here for this model, newest first."""
        return fitted_lenses(self.fingerprint)

    def open(self, spec: str, d_model: int, n_layers: int) -> Lens:
        """``logit``, ``jacobian`` (the newest lens fitted here) or ``jacobian:PATH`` (a lens file):
        checked against the model's shapes, in one line if wrong."""
        if spec == "logit":
            return LOGIT_LENS
        kind, _, path = spec.partition(":")
        if kind != "jacobian":
            raise UserError(f"unknown lens {spec!r}: use logit, jacobian or jacobian:PATH")
        if path:
            found = Path(path)
        else:
            fits = self.fitted()
            if not fits:
                raise UserError(
                    "no Jacobian lens was fitted for this model yet: run 'neuron-tui lens fit' "
                    "(same --model), or give a lens file with --lens jacobian:PATH"
                )
            found = fits[0]
        lens_file = open_lens_file(found)
        lens_file.check_model(d_model, n_layers)
        self.opened[lens_file.digest] = lens_file
        return Lens("jacobian", lens_file.digest)

    def file(self, lens: Lens) -> LensFile | None:
        """The file behind an opened Jacobian lens (None for the logit lens)."""
        if lens.digest is None:
            return None
        if lens.digest not in self.opened:
            raise UserError(f"the lens {lens.label} is not open here: pass it with --lens jacobian:PATH")
        return self.opened[lens.digest]

    def transport(self, lens: Lens, layer: int, n_layers: int) -> np.ndarray | None:
        """J_l of ``lens`` as float64, or None where the neuron is read as it is."""
        lens_file = self.file(lens)
        return None if lens_file is None else lens_file.transport(layer, n_layers)
