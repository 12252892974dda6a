"""Everything read off a score block besides its top-k selections, in one compiled pass.

Eager PyTorch reads and writes the [tokens, neurons] block once per statistic (the centring, the
histogram keys, the three power sums, |score|, the unit-norm maximum): about ten memory-bound
passes, which together cost as much as the block's matrix product. ``block_statistics``
writes them as one function, and ``torch.compile`` (C++/OpenMP kernels on the CPU, Triton on GPUs)
fuses it into a few loops over the block that read it once or twice:

- per token: |score| (kept for the top-k along the row) and the neuron meeting it hardest per unit
  norm;
- per neuron: the histogram of centred scores counted straight into the window's bins, and the
  centred power sums, accumulated in float64 (a compiled loop reads float32 and sums in float64 at
  the same speed, and is more exact than the eager path's pairwise float32 sums).

The top-k selections (each token's best neurons, the candidates' threshold tests and ``nonzero``)
stay eager: they are library kernels the compiler calls as they are.

Compiling takes seconds (7-13 s on a 2-core CPU, about 3 s when the kernels are already in the
disk cache, kept beside the results), once per process and device. Where compiling fails (no
C++ compiler, no Triton), scans stay in eager mode. ``NEURON_TUI_COMPILE``: ``auto`` (the default:
on GPUs, for blocks of at least ``AUTO_MIN_ELEMENTS`` scores), ``on`` (any device and size) or
``off``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import torch

from engine.score_histogram import BINS_PER_SIGN, KEY_SHIFT, SIGN_KEY

COMPILE_ENV = "NEURON_TUI_COMPILE"
AUTO_MIN_ELEMENTS = 1 << 21  # tiny models stay eager: compiling would cost more than it saves
_log = logging.getLogger(__name__)


def block_statistics(
    block: torch.Tensor,
    mean: torch.Tensor,
    inverse_norm: torch.Tensor,
    window_low: torch.Tensor,
    bin_counts: torch.Tensor,
):
    """One block's statistics.

    ``block`` [tokens, neurons] float32; ``mean`` and ``inverse_norm`` [neurons] float32;
    ``window_low`` the histogram window's lowest key (an int32 scalar tensor, so a new layer does
    not recompile); ``bin_counts`` [2 * BINS_PER_SIGN, neurons] int32, counted into in place.

    Returns |block|, each token's best unit-norm score and its neuron, and the centred power sums
    (^2, ^3, ^4) in float64.
    """
    centred = block - mean
    bits = centred.view(torch.int32)
    step = (((bits >> KEY_SHIFT) & (SIGN_KEY - 1)) - window_low).clamp(0, BINS_PER_SIGN - 1)
    bins = torch.where(bits < 0, BINS_PER_SIGN - 1 - step, BINS_PER_SIGN + step).long()
    bin_counts.scatter_add_(0, bins, torch.ones_like(bins, dtype=torch.int32))
    wide = centred.double()
    square = wide * wide
    magnitude = block.abs()
    unit_best, unit_neuron = (magnitude * inverse_norm).max(dim=1)
    sums = (square.sum(0), (square * wide).sum(0), (square * square).sum(0))
    return magnitude, unit_best, unit_neuron, sums


def compile_mode() -> str:
    mode = os.environ.get(COMPILE_ENV, "auto").strip().lower() or "auto"
    return mode if mode in ("auto", "off", "on") else "auto"


class CompiledPasses:
    """Compiled versions of ``block_statistics``, one per device.

    ``get`` compiles on first use (seconds; the calling thread waits, so that a layer's numbers
    never depend on how fast a compiler ran) and returns None where the pass is not compiled: off,
    below the size worth it, or where compiling failed.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._compiled: dict[tuple, Callable | None] = {}

    def get(self, shape: tuple[int, int], device: torch.device) -> Callable | None:
        """The pass for blocks of ``shape`` [tokens, neurons] on ``device`` (compiled with dynamic
        sizes: one compile serves every layer, the last block and the halved blocks of an
        out-of-memory retry)."""
        if not wanted(shape, device):
            return None
        key = (device.type, device.index)
        with self._lock:  # one compile at a time; a second thread asking for it waits for it
            if key not in self._compiled:
                self._compiled[key] = _compile((min(shape[0], 1024), shape[1]), device)
            return self._compiled[key]


def wanted(shape: tuple[int, int], device: torch.device) -> bool:
    """``auto`` compiles on GPUs, for blocks of at least AUTO_MIN_ELEMENTS scores: there the fused
    pass saves most. On a CPU it saved 15% of a SmolLM2 scan for 7-13 s of compiling (3 s once the
    kernels are cached), so there it runs only when asked for (``on``)."""
    mode = compile_mode()
    if mode == "off":
        return False
    if mode == "on":
        return True
    return device.type == "cuda" and shape[0] * shape[1] >= AUTO_MIN_ELEMENTS


def _compile(shape: tuple[int, int], device: torch.device) -> Callable | None:
    try:
        _configure_inductor()
        compiled = torch.compile(block_statistics, dynamic=True, fullgraph=True)
        vector = torch.zeros(shape[1], device=device)
        compiled(  # compiles for these dtypes and this device (sizes stay symbolic), and runs once
            torch.zeros(shape, device=device),
            vector,
            vector,
            torch.zeros((), dtype=torch.int32, device=device),
            torch.zeros((2 * BINS_PER_SIGN, shape[1]), dtype=torch.int32, device=device),
        )
        return compiled
    except Exception as error:  # no compiler, no Triton, an unsupported op: eager it is
        _log.warning("compiling the block pass failed, scans stay in eager mode: %s", error)
        return None


def _configure_inductor() -> None:
    """Compile in this thread (no pool of worker processes left behind). Kernels are cached on
    disk where ``TORCHINDUCTOR_CACHE_DIR`` says: the engine points it at its result cache's
    ``compiled/`` folder; without a cache, torch's own default place."""
    import torch._inductor.config as inductor

    inductor.compile_threads = 1


COMPILED = CompiledPasses()
