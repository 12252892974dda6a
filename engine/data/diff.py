"""Two checkpoints of one architecture family and shape, neuron by neuron.

Fine-tuning keeps the neuron basis (neuron i of layer l is the same unit in both), so the comparison
is per neuron: how far its write turned (the cosine of W_out_A[i] and W_out_B[i], float64), how its
max-dot and its null-z moved (B minus A, each under its own model's null), and how much of its
top-k promote and suppress lists survived (Jaccard of the token sets) and whether its strongest
token (by |dot|, sign kept) is the same. ``LayerDiff`` is plain data, cached per pair of weights
fingerprints and settings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from engine.data.model import ModelInfo
from engine.errors import UserError

_SHAPES = ("n_layers", "d_model", "d_mlp", "d_vocab")

# A GGUF file names its architecture as llama.cpp does (llama, qwen2, gpt2, gptneox, ...), a
# Hugging Face checkpoint by its transformers class (LlamaForCausalLM, GPT2LMHeadModel, ...): both
# are read down to one family name. The names that do not read down alike are listed here.
_CLASS_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
_ALIASES = {
    "mistral": "llama",  # llama.cpp converts Mistral checkpoints as llama
    "phi": "phi2",  # PhiForCausalLM is llama.cpp's phi2
    "starcoder": "gptbigcode",  # GPTBigCodeForCausalLM is llama.cpp's starcoder
    "commandr": "cohere",  # CohereForCausalLM is llama.cpp's command-r
}


def family(architecture: str) -> str:
    """The architecture family, alike for a GGUF file and a Hugging Face copy of one model:
    ``llama`` for both ``llama`` and ``LlamaForCausalLM``, ``gptneox`` for ``GPTNeoXForCausalLM``."""
    name = architecture
    for suffix in _CLASS_SUFFIXES:
        if name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
            break
    key = "".join(character for character in name.lower() if character.isalnum())
    return _ALIASES.get(key, key)


def check_comparable(a: ModelInfo, b: ModelInfo) -> None:
    """Refuse two models that are not of one architecture family and every shape (neuron i must be
    the same unit in both)."""
    if family(a.architecture) != family(b.architecture):
        raise UserError(
            f"cannot diff {a.name} against {b.name}: architecture is {a.architecture} in one and "
            f"{b.architecture} in the other; diff compares checkpoints of one architecture and shape"
        )
    for name in _SHAPES:
        if getattr(a, name) != getattr(b, name):
            raise UserError(
                f"cannot diff {a.name} against {b.name}: {name} is {getattr(a, name)} in one and "
                f"{getattr(b, name)} in the other; diff compares checkpoints of one architecture and shape"
            )
    if a.layer_experts != b.layer_experts:  # neuron i must be the same expert's neuron in both
        raise UserError(
            f"cannot diff {a.name} against {b.name}: their layers' experts differ (count or sizes); "
            "diff compares checkpoints of one architecture and shape"
        )


@dataclass(frozen=True)
class LayerDiff:
    layer: int
    cosine: np.ndarray  # [d_mlp] cos(W_out_A[i], W_out_B[i]); NaN where either row is zero
    max_dot_change: np.ndarray  # B - A
    null_z_change: np.ndarray  # B - A, each against its own model's null baseline
    promote_jaccard: np.ndarray  # |A ∩ B| / |A ∪ B| of the top-k promote token sets
    suppress_jaccard: np.ndarray
    top_kept: np.ndarray  # bool: the strongest token (by |dot|, sign kept) is the same

    @property
    def d_mlp(self) -> int:
        return self.cosine.shape[0]

    def summary(self) -> dict:
        """The layer in a few numbers."""
        cosine = self.cosine[np.isfinite(self.cosine)]
        return {
            "layer": self.layer,
            "cos_p50": float(np.median(cosine)) if cosine.size else float("nan"),
            "cos_min": float(cosine.min()) if cosine.size else float("nan"),
            "changed": int((cosine < 0.999).sum()),  # neurons whose write turned by more than ~2.6°
            "max_dot_change_p50": float(np.median(self.max_dot_change)),
            "null_z_change_p50": float(np.median(self.null_z_change)),
            "promote_jaccard_mean": float(self.promote_jaccard.mean()),
            "suppress_jaccard_mean": float(self.suppress_jaccard.mean()),
            "top_kept_share": float(self.top_kept.mean()),
        }

    _ARRAYS = ("cosine", "max_dot_change", "null_z_change", "promote_jaccard", "suppress_jaccard", "top_kept")

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, layer=np.int64(self.layer), **{name: getattr(self, name) for name in self._ARRAYS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> LayerDiff:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            return cls(int(archive["layer"]), *(archive[name] for name in cls._ARRAYS))
