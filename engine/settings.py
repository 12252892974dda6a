"""Settings that change a scan's results; each one is part of the cache key and of every export.

Validated once, when built: a ``ScanSettings`` that exists is a valid one. Change one with
``dataclasses.replace``, which validates again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from engine.errors import UserError

Dtype = Literal["float32", "bfloat16"]
DTYPES: tuple[str, ...] = get_args(Dtype)
# How weights are read: GGUF and safetensors files directly, or the model built through
# transformers + TransformerBridge (engine.sources.resolve).
Loader = Literal["auto", "gguf", "bridge", "stream"]
LOADERS: tuple[str, ...] = get_args(Loader)
# 4: results record the device; 5: score histograms; 6: LayerNorm/Gemma folds; 7: exact bf16
# products (split operands, the bound checked at every precision), results record the precision.
SCHEMA_VERSION = 7
DEFAULT_TOP_K = 10
DEFAULT_TOKEN_TOP_N = 8


@dataclass(frozen=True)
class Projection:
    """How neuron output directions meet the unembedding. The default is the raw logit lens on
    weights; Gurnee et al. (2024) use all three flags."""

    fold_final_norm: bool = False  # scale W_U's rows by the final norm's weight
    center_unembed: bool = False  # subtract each W_U row's mean over the vocabulary
    cosine: bool = False  # divide by |W_out[i]| and each W_U column's norm

    @property
    def label(self) -> str:
        flags = (("fold", self.fold_final_norm), ("center", self.center_unembed), ("cosine", self.cosine))
        parts = [name for name, on in flags if on]
        return "+".join(parts) if parts else "raw"

    @property
    def short_label(self) -> str:
        """The label in at most 12 characters, for a status line at 80 columns."""
        flags = (("fold", self.fold_final_norm), ("ctr", self.center_unembed), ("cos", self.cosine))
        parts = [name for name, on in flags if on]
        return "+".join(parts) if parts else "raw"


GURNEE = Projection(fold_final_norm=True, center_unembed=True, cosine=True)

LensKind = Literal["logit", "jacobian"]
LENS_KINDS: tuple[str, ...] = get_args(LensKind)


@dataclass(frozen=True)
class Lens:
    """Which frame a neuron's write is read in. ``logit``: as it is (the logit lens on weights).
    ``jacobian``: through a fitted Jacobian lens (engine.lens), J_l w for a neuron of layer l;
    ``digest`` is the lens file's content fingerprint, so results are cached per lens."""

    kind: LensKind = "logit"
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in LENS_KINDS:
            raise UserError(f"unknown lens {self.kind!r}: use one of {', '.join(LENS_KINDS)}")
        if (self.kind == "jacobian") != (self.digest is not None):
            raise UserError("a Jacobian lens is named by its file's fingerprint, the logit lens by none")

    @property
    def label(self) -> str:
        return "logit" if self.digest is None else f"jacobian:{self.digest[:12]}"

    @property
    def short_label(self) -> str:
        """At most 8 characters, for a status line at 80 columns."""
        return "logit" if self.digest is None else "J-lens"


LOGIT_LENS = Lens()


@dataclass(frozen=True)
class Units:
    """Which units a layer is read as: the model's MLP neurons, or the features of a dictionary
    set (sparse autoencoders, transcoders) opened with ``--dictionary`` (engine.dictionaries).
    ``digest`` is the set's content fingerprint, so results are cached per dictionary set;
    ``name`` is how it is shown."""

    digest: str | None = None
    name: str = "neurons"

    def __post_init__(self) -> None:
        if (self.digest is None) != (self.name == "neurons"):
            raise UserError("a dictionary set is named by its files' fingerprint, the neurons by none")

    @property
    def is_dictionary(self) -> bool:
        return self.digest is not None

    @property
    def label(self) -> str:
        return self.name if self.digest is None else f"{self.name}:{self.digest[:12]}"


NEURONS = Units()


@dataclass(frozen=True)
class ScanSettings:
    top_k: int = DEFAULT_TOP_K  # tokens kept per neuron
    dtype: Dtype = "float32"  # precision of the big product (engine.scan.precision); scores are float64
    projection: Projection = field(default_factory=Projection)
    token_top_n: int = DEFAULT_TOKEN_TOP_N  # neurons kept per vocabulary token (column-wise top-N)
    lens: Lens = field(default_factory=Lens)
    units: Units = field(default_factory=Units)

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise UserError(f"top-k must be a whole number of at least 1, got {self.top_k!r}")
        if (
            isinstance(self.token_top_n, bool)
            or not isinstance(self.token_top_n, int)
            or self.token_top_n < 1
        ):
            raise UserError(f"neurons kept per token must be at least 1, got {self.token_top_n!r}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if not isinstance(self.projection, Projection):
            raise UserError(f"projection must be a Projection, got {type(self.projection).__name__}")
        if not isinstance(self.lens, Lens):
            raise UserError(f"lens must be a Lens, got {type(self.lens).__name__}")
        if not isinstance(self.units, Units):
            raise UserError(f"units must be Units, got {type(self.units).__name__}")

    @property
    def cache_tag(self) -> str:
        tag = f"s{SCHEMA_VERSION}-k{self.top_k}-n{self.token_top_n}-{self.dtype}-{self.projection.label}"
        # The logit lens and the neurons add nothing, so that layers cached before lenses and
        # dictionaries existed stay found.
        if self.lens.digest is not None:
            tag = f"{tag}-jlens{self.lens.digest[:32]}"
        return tag if self.units.digest is None else f"{tag}-dict{self.units.digest[:32]}"

    def to_dict(self) -> dict:
        return {
            "top_k": self.top_k,
            "dtype": self.dtype,
            "projection": self.projection.label,
            **asdict(self.projection),
            "token_top_n": self.token_top_n,
            "lens": self.lens.label,
            "units": self.units.label,
        }


@dataclass(frozen=True)
class ActivationSettings:
    """What an activation pass computes; validated when built."""

    context: int = 256  # tokens per window
    examples: int = 20  # top examples shown and exported per neuron
    lift_positions: int = 100  # top examples the lift is measured on
    max_tokens: int | None = None  # cap on positions read from the corpus
    batch_tokens: int = 2048  # tokens per forward pass (whole windows)

    def __post_init__(self) -> None:
        for name in ("context", "examples", "lift_positions", "batch_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.context < 2:
            raise UserError(f"context must be at least 2 tokens, got {self.context}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(f"max-tokens must be at least 1, got {self.max_tokens}")

    @property
    def keep(self) -> int:
        """Top examples kept per neuron: enough for both the shown examples and the lift."""
        return max(self.examples, self.lift_positions)

    @property
    def windows_per_batch(self) -> int:
        return max(1, self.batch_tokens // self.context)

    @property
    def cache_tag(self) -> str:
        return f"{self.base_tag}-m{self.max_tokens}"

    @property
    def base_tag(self) -> str:
        """Everything but the token cap: passes with different caps read the same windows in the
        same batches, so one is a prefix of the other."""
        # a3: the attribution columns (attr_mean, attr_top1, attr_dominant) joined the evidence.
        return f"a3-c{self.context}-e{self.examples}-l{self.lift_positions}-b{self.windows_per_batch}"


# A Jacobian lens fit (engine.lens.fit).
DEFAULT_PROMPTS = 32
DEFAULT_MAX_SEQ_LEN = 128
DEFAULT_DIM_BATCH = 32  # output dimensions per backward pass: memory, not results
SKIP_FIRST_POSITIONS = 16  # TransformerLens's default: attention-sink positions are left out


@dataclass(frozen=True)
class FitSettings:
    prompts: int = DEFAULT_PROMPTS
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    dim_batch: int = DEFAULT_DIM_BATCH
    skip_first_positions: int = SKIP_FIRST_POSITIONS

    def __post_init__(self) -> None:
        for name in ("prompts", "dim_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_seq_len < self.skip_first_positions + 2:
            raise UserError(
                f"max-seq-len must be at least {self.skip_first_positions + 2}: the first "
                f"{self.skip_first_positions} positions and the last are not fitted, got {self.max_seq_len}"
            )

    def tag(self, corpus_hash: str) -> str:
        """The lens file's name: what changes its matrices (dim_batch does not)."""
        return f"jlens-{corpus_hash[:16]}-p{self.prompts}-t{self.max_seq_len}-s{self.skip_first_positions}"


# A dictionary fit (engine.dictionaries.fit: EleutherAI sparsify's trainer).
DictionaryKind = Literal["sae", "transcoder"]
DictionarySite = Literal["resid", "mlp"]


@dataclass(frozen=True)
class DictionaryFitSettings:
    """What a dictionary fit trains: a top-k SAE or transcoder of one layer's residual stream after
    the block (``resid``) or its MLP (``mlp``: an SAE of its output, a transcoder from its input to
    its output), ``latents`` wide (0: 8 x d_model), over the corpus's first ``max_tokens`` tokens in
    whole windows of ``context``."""

    layer: int
    kind: DictionaryKind = "sae"
    site: DictionarySite = "mlp"
    latents: int = 0
    k: int = 32
    context: int = 128
    max_tokens: int = 200_000
    batch_size: int = 16  # windows per training step
    seed: int = 0
    lr: float | None = None  # Adam's learning rate; None: sparsify's, 2e-4 / sqrt(latents / 2^14)

    def __post_init__(self) -> None:
        if self.kind not in ("sae", "transcoder"):
            raise UserError(f"unknown dictionary kind {self.kind!r}: use sae or transcoder")
        if self.site not in ("resid", "mlp"):
            raise UserError(f"unknown site {self.site!r}: use resid (after the block) or mlp")
        for name in ("k", "context", "max_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.latents < 0 or self.layer < 0 or self.seed < 0:
            raise UserError("layer, latents and seed must not be negative")
        if self.lr is not None and not 0 < self.lr < 1:
            raise UserError(f"the learning rate must be between 0 and 1, got {self.lr}")
        if self.max_tokens < self.context * self.batch_size:
            raise UserError(
                f"max-tokens {self.max_tokens} is less than one batch of {self.batch_size} windows of "
                f"{self.context} tokens: give at least {self.context * self.batch_size}"
            )
        if self.latents and self.k > self.latents:
            raise UserError(f"k {self.k} is more than the {self.latents} latents: use a smaller k")

    @property
    def hookpoint(self) -> str:
        """sparsify's name of the place: the block's output, or its MLP."""
        return f"layers.{self.layer}" if self.site == "resid" else f"layers.{self.layer}.mlp"

    def tag(self, corpus_hash: str, latents: int) -> str:
        """The fit's folder name: what changes its weights."""
        rate = "" if self.lr is None else f"{self.lr:g}"  # none: sparsify's own
        return (
            f"{self.kind}-{self.site}-L{self.layer}-x{latents}-k{self.k}-c{self.context}-"
            f"m{self.max_tokens}-b{self.batch_size}-s{self.seed}-adam{rate}-{corpus_hash[:12]}"
        )
