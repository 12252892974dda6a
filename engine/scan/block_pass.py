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
disk cache, kept beside the results), once per process and device: under ``auto`` it runs in the
background while the first layers scan eagerly. Where compiling fails (no C++ compiler, no
Triton), scans stay in eager mode. ``NEURON_TUI_COMPILE``: ``auto`` (the default: on GPUs, for
blocks of at least ``AUTO_MIN_ELEMENTS`` scores), ``on`` (any device and size, compiled before the
first block) or ``off``. On a CPU the numba sweeps (``engine.scan.fused_block``) are the fused
pass; this one runs there only when asked for.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import torch

from engine.data.score_histogram import BINS_PER_SIGN, KEY_SHIFT, SIGN_KEY

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

    ``get`` returns None where the pass is not compiled: off, below the size worth it, where
    compiling failed, or (``auto``) while it is still compiling. Under ``auto`` the compile runs in
    a background thread and layers scan in eager mode until it is ready, so the first layer of a
    GPU scan never waits seconds for a compiler; under ``on`` the calling thread waits for it, so
    that every layer of a run takes the same path (the two agree on every ranking and count, and
    on the moments to float64 rounding).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._compiled: dict[tuple, Callable | None] = {}
        self._compiling: dict[tuple, threading.Thread] = {}

    def get(self, shape: tuple[int, int], device: torch.device) -> Callable | None:
        """The pass for blocks of ``shape`` [tokens, neurons] on ``device`` (compiled with dynamic
        sizes: one compile serves every layer, the last block and the halved blocks of an
        out-of-memory retry)."""
        if not wanted(shape, device):
            return None
        key = (device.type, device.index)
        example = (min(shape[0], 1024), shape[1])
        if compile_mode() == "on":
            with self._lock:  # one compile at a time; a second thread asking for it waits for it
                if key not in self._compiled:
                    self._compiled[key] = _compile(example, device)
                return self._compiled[key]
        with self._lock:
            if key in self._compiled:
                return self._compiled[key]
            if key not in self._compiling:
                worker = threading.Thread(
                    target=self._compile_in_background,
                    args=(key, example, device),
                    name="neuron-tui-compile",
                    daemon=True,
                )
                self._compiling[key] = worker
                worker.start()
            return None

    def _compile_in_background(self, key: tuple, shape: tuple[int, int], device: torch.device) -> None:
        compiled = _compile(shape, device)
        with self._lock:
            self._compiled[key] = compiled
            self._compiling.pop(key, None)

    def wait(self) -> None:
        """Block until background compiles finish (a benchmark timing the compiled pass)."""
        while True:
            with self._lock:
                workers = list(self._compiling.values())
            if not workers:
                return
            for worker in workers:
                worker.join()


def wanted(shape: tuple[int, int], device: torch.device) -> bool:
    """``auto`` compiles on GPUs, for blocks of at least AUTO_MIN_ELEMENTS scores: there the fused
    pass saves most. On a CPU the numba sweeps are faster, so there it runs only when asked for
    (``on``)."""
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
