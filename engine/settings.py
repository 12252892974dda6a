"""Settings that change a scan's results; each one is part of the cache key and of every export."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Projection:
    """How neuron output directions meet the unembedding. The default is the raw logit lens on
    weights; Gurnee et al. (2024) use all three flags."""

    fold_final_norm: bool = False  # scale W_U's rows by the final norm's weight
    center_unembed: bool = False  # subtract each W_U row's mean over the vocabulary
    cosine: bool = False  # divide by |W_out[i]| and each W_U column's norm

    @property
    def label(self) -> str:
        parts = [name for name, on in (("fold", self.fold_final_norm), ("center", self.center_unembed), ("cosine", self.cosine)) if on]
        return "+".join(parts) if parts else "raw"

    def toggled(self, flag: str) -> "Projection":
        values = asdict(self)
        values[flag] = not values[flag]
        return Projection(**values)


@dataclass(frozen=True)
class ScanSettings:
    top_k: int = 10
    dtype: str = "float32"
    projection: Projection = field(default_factory=Projection)
    token_top_n: int = 8  # neurons kept per vocabulary token (column-wise top-N)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {self.top_k}")
        if self.token_top_n < 1:
            raise UserError(f"--token-top-n must be at least 1, got {self.token_top_n}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")

    @property
    def cache_tag(self) -> str:
        return f"s{SCHEMA_VERSION}-k{self.top_k}-n{self.token_top_n}-{self.dtype}-{self.projection.label}"

    def to_dict(self) -> dict:
        return {
            "top_k": self.top_k,
            "dtype": self.dtype,
            "projection": self.projection.label,
            **asdict(self.projection),
            "token_top_n": self.token_top_n,
        }
