"""Activation evidence as records: one per neuron, with its top examples as text.

An example's ``context`` is the text of up to 8 tokens before the firing token, the firing token
between ``⟦`` and ``⟧``, then up to 4 tokens after, all within the same document. Tokens are
joined as bytes before decoding, so characters split across tokens read whole; bytes that are not
UTF-8 show as ``\\xNN``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from engine.evidence import CONTEXT_BEFORE, LayerActivations
from engine.tokens import Vocabulary, bytes_to_text

MARK_OPEN, MARK_CLOSE = "⟦", "⟧"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def example_context(context_ids: np.ndarray, vocab: Vocabulary) -> tuple[str, str, str]:
    """(text before, the firing token, text after) of one example's context ids."""
    before = b"".join(vocab.token_bytes(int(t)) for t in context_ids[:CONTEXT_BEFORE] if t >= 0)
    after = b"".join(vocab.token_bytes(int(t)) for t in context_ids[CONTEXT_BEFORE + 1 :] if t >= 0)
    firing = vocab.token_bytes(int(context_ids[CONTEXT_BEFORE]))
    return bytes_to_text(before), bytes_to_text(firing), bytes_to_text(after)


def examples_of(
    evidence: LayerActivations, neuron: int, vocab: Vocabulary, count: int | None = None
) -> list[dict]:
    shown = []
    for rank in range(min(count or evidence.examples, evidence.examples)):
        if evidence.doc[neuron, rank] < 0:
            break
        before, firing, after = example_context(evidence.context_ids[neuron, rank], vocab)
        shown.append(
            {
                "doc": int(evidence.doc[neuron, rank]),
                "position": int(evidence.position[neuron, rank]),
                "token_id": int(evidence.token_id[neuron, rank]),
                "token": vocab.text(int(evidence.token_id[neuron, rank])),
                "activation": float(evidence.values[neuron, rank]),
                "context": f"{before}{MARK_OPEN}{firing}{MARK_CLOSE}{after}",
            }
        )
    return shown


def activation_records(model: str, vocab: Vocabulary, evidence: LayerActivations) -> Iterator[dict]:
    for neuron in range(evidence.d_mlp):
        yield {
            "model": model,
            "layer": evidence.layer,
            "neuron": neuron,
            "density": float(evidence.density[neuron]),
            "lift": _number(evidence.lift[neuron]),
            "hit_rate": _number(evidence.hit_rate[neuron]),
            "base_rate": float(evidence.base_rate[neuron]),
            "direct_effect": float(evidence.direct_effect[neuron]),
            "examples": examples_of(evidence, neuron, vocab),
        }
