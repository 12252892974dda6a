"""The scan's big product in a chosen precision, and a rigorous bound on its error.

Every reported score is a float64 score; the fast product only has to pick candidates, and a bound
on its error says whether it can have missed one (``engine.scan.layer_scan``). The bound is per
neuron row: |fast - exact| <= ``coefficient * |w| * max_t |u_t|`` for every token t. The fast
scores also feed the moments and the histogram, so they are kept as good as float32's.

- **float32**: operands are float32 (rounded from float64 where the projection transformed them)
  and the product accumulates in float32.
- **bfloat16**: a product of two bf16 numbers is exact in float32, so only the accumulation errs.
  An operand that is exactly a bf16 array (a bf16 checkpoint under the raw projection) multiplies as
  it is. Any other (a float32 checkpoint, the bundled GGUF dequantised to float32, a folded,
  centred or unit-norm operand) is split into up to three bf16 parts, x = x0 + x1 + x2 + r with
  |x_i| <= 2^-8i (1 + 2^-8) |x| and |r| <= 2^-24 |x| (three parts hold a float32 exactly). The
  products of parts x_i * y_j with i + j <= 2 are kept (BF16x6 when both sides split, three
  products when one does): the left-out terms are of order 2^-24, as float32's own rounding. The
  kept pairs are concatenated along the inner dimension, so one matrix product sums them all in
  float32.

The accumulation may run in any order and tensor cores may truncate rather than round, so its unit
error is taken as 2^-23 (twice float32's rounding unit) for n = inner dimension + 4 terms.

On CUDA the bf16 product writes float32 directly (``torch.mm(..., out_dtype=torch.float32)``). Where
a device cannot (a CPU: torch rounds a CPU bf16 product to bf16, which would cost 2^-8 of every
score), the same bf16 operands are widened to float32 and multiplied there: the arithmetic the bound
covers, at float32's speed or slower, which is what the CPU tests of this path run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

_BF16_UNIT = 2.0**-8  # bf16 keeps 8 significant bits: round to nearest errs by at most 2^-8 relative
_F32_UNIT = 2.0**-24
_ACCUMULATION_UNIT = 2.0**-23  # truncating accumulators err up to one float32 ulp, not half
MAX_PARTS = 3
MAX_ORDER = 2  # keep x_i * y_j with i + j <= 2


@dataclass(frozen=True)
class SplitOperand:
    """An operand as bf16 parts, largest first; one part where the operand is exactly bf16.
    ``exact``: the parts sum to the operand exactly (no residual)."""

    parts: tuple[torch.Tensor, ...]
    exact: bool

    def transposed(self) -> SplitOperand:
        return SplitOperand(tuple(part.T for part in self.parts), self.exact)


def split_bfloat16(values: torch.Tensor) -> SplitOperand:
    """``values`` (float32 or float64) as up to MAX_PARTS bf16 parts, stopping once exact."""
    parts: list[torch.Tensor] = []
    remainder = values
    for _ in range(MAX_PARTS):
        part = remainder.to(torch.bfloat16)
        parts.append(part)
        remainder = remainder - part.to(values.dtype)  # exact: the rounding error of a rounding
        if not bool(remainder.any()):
            return SplitOperand(tuple(parts), True)
    return SplitOperand(tuple(parts), False)


def split_columns(
    n_rows: int, d: int, rows: Callable[[int, int], torch.Tensor], device: torch.device, chunk: int = 8192
) -> SplitOperand:
    """``split_bfloat16`` of a [n_rows, d] matrix whose rows [start, stop) ``rows(start, stop)``
    gives (float64 or float32), a chunk at a time: no wide copy of a 128k-token unembedding at
    once, and a further part allocated only once some chunk needs it."""
    parts: list[torch.Tensor] = []
    exact = True
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        split = split_bfloat16(rows(start, stop))
        exact = exact and split.exact
        for index, part in enumerate(split.parts):
            if index == len(parts):
                parts.append(torch.zeros((n_rows, d), dtype=torch.bfloat16, device=device))
            parts[index][start:stop] = part
    return SplitOperand(tuple(parts), exact)


def _magnitudes(parts: int, exact: bool) -> tuple[list[float], float]:
    """Bounds on |x_i| / |x| for each part, and on the residual |r| / |x|."""
    if parts == 1 and exact:
        return [1.0], 0.0
    u = _BF16_UNIT
    return [u**i * (1 + u) for i in range(parts)], (0.0 if exact else u**parts)


@dataclass(frozen=True)
class ProductPlan:
    """How one layer's blocks are multiplied: the precision, how many bf16 parts each operand has
    (and whether they are exact), and so the pairs of parts summed."""

    precision: str
    d_model: int
    token_parts: int = 1
    neuron_parts: int = 1
    tokens_exact: bool = True
    neurons_exact: bool = True

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [
            (i, j) for i in range(self.token_parts) for j in range(self.neuron_parts) if i + j <= MAX_ORDER
        ]

    @property
    def terms(self) -> int:
        """Products summed per score: d per kept pair of parts."""
        return self.d_model * (1 if self.precision == "float32" else len(self.pairs))

    @property
    def coefficient(self) -> float:
        """c in |fast - exact| <= c |w| max|u|: accumulation plus what the parts leave out."""
        n = self.terms + 4
        accumulation = n * _ACCUMULATION_UNIT / (1 - n * _ACCUMULATION_UNIT)
        if self.precision == "float32":
            # Both operands rounded to float32 (exact when they were float32 already).
            return (accumulation * (1 + _F32_UNIT) ** 2 + 2 * _F32_UNIT + _F32_UNIT**2) * 1.01
        # x y - sum of kept x_i y_j = the left-out pairs + r_x y + x_parts r_y; by Cauchy-Schwarz
        # each sum over the inner dimension of |a_k||b_k| is at most |a||b|.
        a, r_a = _magnitudes(self.token_parts, self.tokens_exact)
        b, r_b = _magnitudes(self.neuron_parts, self.neurons_exact)
        kept = set(self.pairs)
        left_out = sum(a[i] * b[j] for i in range(len(a)) for j in range(len(b)) if (i, j) not in kept)
        residuals = r_a * (sum(b) + r_b) + r_b * sum(a)
        summed = sum(a[i] * b[j] for i, j in kept)
        return (accumulation * summed + left_out + residuals) * 1.01

    @property
    def underflow(self) -> float:
        """An absolute term for parts that fell below bf16's smallest subnormal (2^-133), where the
        relative bounds above stop holding: at most 2^-133 per element, so 2^-133 sqrt(d) times the
        other side's norm, for each side; zero when nothing was split."""
        if self.precision == "float32" or (self.tokens_exact and self.neurons_exact):
            return 0.0
        return 2.0**-133 * self.d_model**0.5 * 2

    @property
    def label(self) -> str:
        """What a user reads: the precision and how its operands were split."""
        if self.precision == "float32":
            return "float32"
        split = [
            f"{name} in {parts} parts"
            for name, parts in (("W_U", self.token_parts), ("W_out", self.neuron_parts))
            if parts > 1
        ]
        return f"bfloat16 x{len(self.pairs)}" + (f" ({', '.join(split)})" if split else " (exact inputs)")


class BlockProduct:
    """Multiplies token blocks of a split unembedding against one layer's split neuron matrix.

    ``tokens``: [d_vocab, d] parts; ``neurons``: [d, d_mlp] parts. ``multiply(start, stop, out)``
    writes the float32 scores of tokens [start, stop) into ``out`` [stop - start, d_mlp].
    """

    def __init__(self, tokens: SplitOperand, neurons: SplitOperand, device: torch.device):
        self.device = device
        self.plan = ProductPlan(
            "bfloat16",
            tokens.parts[0].shape[1],
            len(tokens.parts),
            len(neurons.parts),
            tokens.exact,
            neurons.exact,
        )
        self._tokens = tokens.parts
        self._token_order = [i for i, _ in self.plan.pairs]
        # The inner dimension's layout: token part i beside neuron part j for each kept pair.
        stacked = torch.cat([neurons.parts[j] for _, j in self.plan.pairs], dim=0)
        self._native = native_float32_output(device)
        self._neurons = stacked if self._native else stacked.float()

    def _token_block(self, start: int, stop: int) -> torch.Tensor:
        if len(self._token_order) == 1:
            return self._tokens[0][start:stop]
        return torch.cat([self._tokens[i][start:stop] for i in self._token_order], dim=1)

    def multiply(self, start: int, stop: int, out: torch.Tensor) -> None:
        block = self._token_block(start, stop)
        if self._native:
            torch.mm(block, self._neurons, out_dtype=torch.float32, out=out)
        else:
            torch.matmul(block.float(), self._neurons, out=out)


_native_lock = threading.Lock()
_native_support: dict[tuple, bool] = {}


def native_float32_output(device: torch.device) -> bool:
    """Whether this device multiplies bf16 into float32 in one call (CUDA's cuBLAS does; CPUs in
    torch do not)."""
    if device.type != "cuda":
        return False
    key = (device.type, device.index)
    with _native_lock:
        if key not in _native_support:
            try:
                probe = torch.ones((2, 2), dtype=torch.bfloat16, device=device)
                out = torch.empty((2, 2), dtype=torch.float32, device=device)
                torch.mm(probe, probe, out_dtype=torch.float32, out=out)
                _native_support[key] = bool((out == 2).all())
            except (RuntimeError, TypeError):
                _native_support[key] = False
        return _native_support[key]
