"""The unembedding as a scan sees it: W_U after the projection flags, in two precisions.

The fast pass multiplies in the product precision (float32, or bf16 parts:
``engine.scan.precision``); selected columns are then rebuilt in float64 from the float32 source
weights (an exact conversion) so that every reported score is a float64 score.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.data.model import FinalNorm
from engine.settings import Projection, ScanSettings

_COLUMN_CHUNK = 8192


class ProjectedUnembed:
    """W_U [d_model, d_vocab] with ``projection`` applied, on ``device``."""

    def __init__(
        self,
        unembed: np.ndarray,
        final_norm: FinalNorm | np.ndarray | None,
        projection: Projection,
        device: torch.device,
        dtype: torch.dtype,
    ):
        """``final_norm``: a FinalNorm, or a bare RMSNorm scale vector."""
        if isinstance(final_norm, np.ndarray):
            final_norm = FinalNorm(final_norm)
        if projection.fold_final_norm and final_norm is None:
            from engine.errors import UserError

            raise UserError("this model has no final norm weight to fold: use a projection without folding")
        self.projection = projection
        self.device = device
        self.dtype = dtype
        # Columns of W_U stored as rows ([d_vocab, d_model]), the layout of an embedding matrix:
        # gathering a token's column is then a contiguous row read.
        self._columns = torch.from_numpy(np.ascontiguousarray(unembed.T, dtype=np.float32)).to(device)
        self.d_vocab, self.d_model = self._columns.shape
        folded = final_norm if projection.fold_final_norm else None
        self._scale = (
            None
            if folded is None
            else torch.from_numpy(np.asarray(folded.scale, dtype=np.float64)).to(device)
        )
        self._centre_tokens = folded is not None and folded.centres
        self._row_mean: torch.Tensor | None = None
        self._column_norm: torch.Tensor | None = None
        if projection.center_unembed:
            total = torch.zeros(self.d_model, dtype=torch.float64, device=device)
            for start in range(0, self.d_vocab, _COLUMN_CHUNK):
                total += self._transform(self._columns[start : start + _COLUMN_CHUNK].double(), None).sum(0)
            self._row_mean = total / self.d_vocab
        norms = torch.empty(self.d_vocab, dtype=torch.float64, device=device)
        for start in range(0, self.d_vocab, _COLUMN_CHUNK):
            norms[start : start + _COLUMN_CHUNK] = self._transform(
                self._columns[start : start + _COLUMN_CHUNK].double(), None
            ).norm(dim=1)
        if projection.cosine:
            self._column_norm = norms.clamp_min(torch.finfo(torch.float64).tiny)
            self.column_norms = torch.ones_like(norms)
        else:
            self.column_norms = norms
        # Mean over the vocabulary of the transformed columns: a neuron's mean score is w . mean.
        column_sum = torch.zeros(self.d_model, dtype=torch.float64, device=device)
        for start in range(0, self.d_vocab, _COLUMN_CHUNK):
            ids = torch.arange(start, min(start + _COLUMN_CHUNK, self.d_vocab), device=device)
            column_sum += self.exact_columns(ids).sum(0)
        self.column_mean = column_sum / self.d_vocab
        # The product's operand: [d_model, d_vocab] float32, or None where bf16 parts stand in.
        self.operand: torch.Tensor | None = None
        if dtype == torch.float32:
            self.operand = self._fast_operand()
        self.split = None if dtype == torch.float32 else self._split_operand()

    @property
    def transforms(self) -> bool:
        return self._scale is not None or self._row_mean is not None or self._column_norm is not None

    def _transform(self, columns: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """Apply fold (scale, then centring over d_model for a LayerNorm) -> center -> cosine to float64
        columns (rows of ``columns``)."""
        if self._scale is not None:
            columns = columns * self._scale
        if self._centre_tokens:  # a folded LayerNorm: each token's column centred over d_model
            columns = columns - columns.mean(dim=-1, keepdim=True)
        if self._row_mean is not None:
            columns = columns - self._row_mean
        if self._column_norm is not None and ids is not None:
            columns = columns / self._column_norm[ids].unsqueeze(-1)
        return columns

    def exact_columns(self, ids: torch.Tensor) -> torch.Tensor:
        """Float64 transformed columns for token ``ids`` (any shape): shape ids.shape + [d_model]."""
        return self._transform(self._columns[ids].double(), ids)

    def _fast_operand(self) -> torch.Tensor:
        """[d_model, d_vocab] float32, for the big matrix product."""
        if not self.transforms:
            return self._columns.T  # a view: matmul reads it transposed without a copy
        out = torch.empty((self.d_vocab, self.d_model), dtype=torch.float32, device=self.device)
        for start in range(0, self.d_vocab, _COLUMN_CHUNK):
            out[start : start + _COLUMN_CHUNK] = self.float32_columns(start, start + _COLUMN_CHUNK)
        return out.T

    def _split_operand(self):
        """The transformed columns [d_vocab, d_model] as bf16 parts (one where they are exact)."""
        from engine.scan.precision import split_columns

        def rows(start: int, stop: int) -> torch.Tensor:
            if not self.transforms:
                return self._columns[start:stop]
            return self.exact_columns(torch.arange(start, stop, device=self.device))

        return split_columns(self.d_vocab, self.d_model, rows, self.device, _COLUMN_CHUNK)

    def float32_columns(self, start: int, stop: int) -> torch.Tensor:
        """Transformed columns of tokens [start, stop) in float32, [n, d_model] (a view when the
        projection leaves W_U as it is)."""
        stop = min(stop, self.d_vocab)
        if not self.transforms:
            return self._columns[start:stop]
        if self.operand is not None:
            return self.operand.T[start:stop]
        return self.exact_columns(torch.arange(start, stop, device=self.device)).float()

    @property
    def max_column_norm(self) -> float:
        return float(self.column_norms.max())


def project_unembed(
    unembed: np.ndarray, final_norm: FinalNorm | None, settings: ScanSettings, device: torch.device
) -> ProjectedUnembed:
    """W_U under the settings' projection and precision, on ``device``; one line when it does not
    fit there."""
    from engine.runtime.device import torch_dtype
    from engine.runtime.resources import is_out_of_memory, too_big_message

    try:
        return ProjectedUnembed(unembed, final_norm, settings.projection, device, torch_dtype(settings.dtype))
    except Exception as error:
        if is_out_of_memory(error):
            from engine.errors import UserError

            raise UserError(too_big_message(device, unembed.nbytes)) from error
        raise
