"""A dictionary's weights, in one orientation whatever file they came from.

``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_out] per layer written to, biases and the activation's
parameters, float32 as stored (bfloat16 and float16 files are widened, exactly). The activation is
described by plain fields that ``engine.dictionaries.encoder`` reads, so that each library's
definition is written down once, there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.dictionary import DictionaryInfo

ARCHITECTURES = ("relu", "topk", "jumprelu", "gated", "groupmax")


@dataclass
class Activation:
    """How pre-activations become feature activations (engine.dictionaries.encoder)."""

    architecture: str  # one of ARCHITECTURES
    k: int = 0  # topk: features kept per position; groupmax: groups
    threshold: np.ndarray | None = None  # jumprelu: [d_sae], a feature fires where pre > threshold
    b_gate: np.ndarray | None = None  # gated: [d_sae] gate bias
    r_mag: np.ndarray | None = None  # gated: [d_sae] log-scale of the magnitude path
    b_mag: np.ndarray | None = None  # gated: [d_sae] magnitude bias
    rescale_by_decoder_norm: bool = False  # SAELens TopK: pre * |W_dec row| first (decode divides)
    relu_in_jump: bool = True  # jumprelu: ReLU(pre) * (pre > t); circuit-tracer's is pre * (pre > t)


@dataclass
class Dictionary:
    info: DictionaryInfo
    W_enc: np.ndarray  # [d_in, d_sae]
    b_enc: np.ndarray  # [d_sae]
    W_dec: dict[int, np.ndarray]  # layer written to -> [d_sae, d_out]
    b_dec: np.ndarray  # [d_out] (a CLT: the bias of the layer it reads, where it has one)
    activation: Activation
    subtract_b_dec: bool = False  # x - b_dec before the encoder (an SAE's apply_b_dec_to_input)
    input_norm: str = "none"  # none, constant_norm_rescale, layer_norm (SAELens's options)
    W_skip: np.ndarray | None = None  # [d_out, d_in]: a skip transcoder adds x @ W_skip.T
    b_dec_out: dict[int, np.ndarray] = field(default_factory=dict)  # a CLT: each target's bias
    files: tuple[Path, ...] = ()  # what was read: the set's fingerprint is theirs

    def direction_rows(self) -> np.ndarray:
        """Each feature's write into the residual stream [d_sae, d_model], float32: its decoder
        row, or for a feature writing to several layers the sum of its rows (computed in
        float64): the logit lens reads the final residual stream, where the writes add up."""
        if len(self.W_dec) == 1:
            return next(iter(self.W_dec.values()))
        total = np.zeros(next(iter(self.W_dec.values())).shape, dtype=np.float64)
        for rows in self.W_dec.values():
            total += rows
        return total.astype(np.float32)

    def direction_rows64(self) -> np.ndarray:
        """``direction_rows`` in float64, before it is held as float32 (references)."""
        total = np.zeros(next(iter(self.W_dec.values())).shape, dtype=np.float64)
        for rows in self.W_dec.values():
            total += rows
        return total
