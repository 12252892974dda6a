"""A text's attribution as records: one per position (``engine.data.attribution`` defines the
numbers), each with its top neurons, the most negative ones, and the ablated neurons' effects."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from engine.data.attribution import NeuronAblation, NeuronAttribution, TextAttribution
from engine.data.tokens import Vocabulary


def _neuron(entry: NeuronAttribution) -> dict:
    return {
        "layer": entry.layer,
        "neuron": entry.neuron,
        "activation": entry.activation,
        "dla": entry.dla,
        "share": entry.share,
    }


def ablation_fields(ablation: NeuronAblation, position: int) -> dict:
    """What ablating one neuron at ``position`` did: the change of the target's logit, the weights'
    prediction of it (−dla), and the rest (the indirect effect)."""
    delta, direct = float(ablation.delta_logit[position]), float(ablation.direct[position])
    return {
        "layer": ablation.layer,
        "neuron": ablation.neuron,
        "activation": float(ablation.activation[position]),
        "delta_logit": delta,
        "direct": direct,
        "indirect": delta - direct,
    }


def attribution_records(
    vocab: Vocabulary, attribution: TextAttribution, ablations: Sequence[NeuronAblation] = ()
) -> Iterator[dict]:
    """One record per position; ``ablation`` lists the ablated neurons in the order given."""
    for position in range(attribution.n_positions):
        token_id, target = int(attribution.token_ids[position]), int(attribution.target_ids[position])
        total = float(attribution.neuron_total[position])
        record = {
            "position": position,
            "token_id": token_id,
            "token": vocab.text(token_id),
            "predicted_id": target,
            "predicted": vocab.text(target),
            "logit": float(attribution.logits[position]),
            "neuron_total": total if math.isfinite(total) else None,
            "neurons": [_neuron(entry) for entry in attribution.neurons(position)],
            "against": [_neuron(entry) for entry in attribution.neurons(position, against=True)],
        }
        if ablations:
            record["ablation"] = [ablation_fields(ablation, position) for ablation in ablations]
        yield record
