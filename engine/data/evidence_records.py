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

from engine.data.evidence import CASES, CONTEXT_BEFORE, CaseEvidence, LayerActivations, PoleEvidence
from engine.data.experts import LayerExperts, record_fields
from engine.data.tokens import Vocabulary, bytes_to_text

MARK_OPEN, MARK_CLOSE = "⟦", "⟧"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def example_context(context_ids: np.ndarray, vocab: Vocabulary) -> tuple[str, str, str]:
    """(text before, the firing token, text after) of one example's context ids."""
    before = b"".join(vocab.token_bytes(int(t)) for t in context_ids[:CONTEXT_BEFORE] if t >= 0)
    after = b"".join(vocab.token_bytes(int(t)) for t in context_ids[CONTEXT_BEFORE + 1 :] if t >= 0)
    firing = vocab.token_bytes(int(context_ids[CONTEXT_BEFORE]))
    return bytes_to_text(before), bytes_to_text(firing), bytes_to_text(after)


def example(
    vocab: Vocabulary, doc: int, position: int, token_id: int, activation: float, context_ids: np.ndarray
) -> dict:
    before, firing, after = example_context(context_ids, vocab)
    return {
        "doc": int(doc),
        "position": int(position),
        "token_id": int(token_id),
        "token": vocab.text(int(token_id)),
        "activation": float(activation),
        "context": f"{before}{MARK_OPEN}{firing}{MARK_CLOSE}{after}",
    }


def examples_of(pole: PoleEvidence, neuron: int, vocab: Vocabulary, count: int) -> list[dict]:
    """The pole's first ``count`` examples of ``neuron``, strongest first."""
    shown = []
    for rank in range(min(count, pole.context_ids.shape[1])):
        if pole.doc[neuron, rank] < 0:
            break
        shown.append(
            example(
                vocab,
                pole.doc[neuron, rank],
                pole.position[neuron, rank],
                pole.token_id[neuron, rank],
                pole.values[neuron, rank],
                pole.context_ids[neuron, rank],
            )
        )
    return shown


def case_examples_of(
    cases: CaseEvidence, neuron: int, case: int, vocab: Vocabulary, count: int
) -> list[dict]:
    """Case ``case``'s first ``count`` examples of ``neuron``, by |activation|."""
    shown = []
    for rank in range(min(count, cases.doc.shape[2])):
        if cases.doc[neuron, case, rank] < 0:
            break
        shown.append(
            example(
                vocab,
                cases.doc[neuron, case, rank],
                cases.position[neuron, case, rank],
                cases.token_id[neuron, case, rank],
                cases.values[neuron, case, rank],
                cases.context_ids[neuron, case, rank],
            )
        )
    return shown


def pole_fields(pole: PoleEvidence, neuron: int, vocab: Vocabulary, examples: int) -> dict:
    return {
        "density": float(pole.density[neuron]),
        "lift": _number(pole.lift[neuron]),
        "hit_rate": _number(pole.hit_rate[neuron]),
        "base_rate": float(pole.base_rate[neuron]),
        "direct_effect": float(pole.direct_effect[neuron]),
        "input_forms": int(pole.input_forms[neuron]),
        "input_entropy": _number(pole.input_entropy[neuron]),
        "attr_mean": _number(pole.attr_mean[neuron]),
        "examples": examples_of(pole, neuron, vocab, examples),
    }


def activation_records(
    model: str,
    vocab: Vocabulary,
    evidence: LayerActivations,
    experts: LayerExperts | None = None,
    dictionary: str | None = None,
) -> Iterator[dict]:
    """One record per neuron: the positive pole's fields at the top level, the negative pole's
    under ``negative`` and, for a gated MLP, the four sign cases' shares under ``cases``; the
    neuron's ``attr_top1`` and its layer's ``layer_attr_dominant`` (engine.data.evidence). In a
    layer of ``experts``: its ``expert``, and ``routed``, the share of positions sent to it (the
    density is then a share of those). A ``dictionary``'s features: ``feature`` and ``dictionary``,
    and the layer's ``explained_variance`` (of its reconstruction) and ``dead_share``."""
    for neuron in range(evidence.d_mlp):
        record = {"model": model, "layer": evidence.layer, **record_fields(neuron, experts, dictionary)}
        if dictionary is not None:
            variance = evidence.explained_variance
            record["layer_explained_variance"] = None if variance is None else _number(variance)
            record["layer_dead_share"] = evidence.dead_share
        if evidence.routed is not None:
            record["routed"] = float(evidence.routed[neuron])
        if evidence.gate_mean is not None:
            record["gate_mean"] = _number(evidence.gate_mean[neuron])
        record |= pole_fields(evidence.positive, neuron, vocab, evidence.examples)
        record["attr_top1"] = float(evidence.attr_top1[neuron])
        record["layer_attr_dominant"] = evidence.attr_dominant
        record["negative"] = pole_fields(evidence.negative, neuron, vocab, evidence.examples)
        if evidence.cases is not None:
            record["cases"] = {
                name: float(evidence.cases.shares[neuron, number]) for number, name in enumerate(CASES)
            }
        yield record
