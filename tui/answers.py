"""The answers that both the command line writes and the MCP server returns, as plain rows: one
function per question, so that `neuron-tui tokens` and the `search_token` tool (and each other
pair) say the same numbers in the same fields. No argparse, no Textual, no printing here."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from engine.data.experts import record_fields
from engine.data.neurons import LayerNeurons
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings

if TYPE_CHECKING:
    from engine.data.firing import PromptFiring


def chosen_layers(engine: NeuronEngine, settings: ScanSettings, spec: str) -> list[int]:
    """The layers ``spec`` names (13, 0-5, 0,3,7 or all), checked against the model; with a
    dictionary set, "all" is the set's layers and a named layer must have a dictionary."""
    from engine.data.layers import parse_layer_spec

    layers = parse_layer_spec(spec, engine.info.n_layers)
    dictionary_layers = engine.unit_layers(settings)
    if dictionary_layers is not None:
        wanted = set(layers)
        layers = [layer for layer in dictionary_layers if layer in wanted]
        if spec.strip().lower() not in ("all", "*"):
            engine.check_unit_layers(sorted(wanted), settings)
    return layers


def token_queries(engine: NeuronEngine, texts: list[str], exact_only: bool) -> list[tuple[str, list]]:
    """Each text with the tokens that match it; one line for a text that matches none."""
    from engine.data.token_index import TokenIndex

    index = TokenIndex(engine.vocabulary)
    queries = []
    for text in texts:
        matches = [m for m in index.find(text) if m.exact or not exact_only]
        if not matches:
            raise UserError(
                f"no token matches {text[:80]!r}: check the spelling (a leading space matters, e.g. ' the')"
            )
        queries.append((text, matches))
    return queries


def token_rows(
    engine: NeuronEngine,
    settings: ScanSettings,
    layers: list[int],
    texts: list[str],
    top: int,
    exact_only: bool,
) -> list[dict]:
    """Per text, per matching token, its ``top`` neurons (or features) by |dot| over ``layers``,
    exact in float64 from the weights: no scan needed."""
    queries = token_queries(engine, texts, exact_only)
    token_ids = sorted({m.token_id for _, matches in queries for m in matches})
    found = engine.exact_token_neurons(token_ids, layers, top, settings)
    dictionaries = {layer: info.name for layer, info in engine.dictionary_infos(settings.units).items()}
    vocab = engine.vocabulary
    return [
        {
            "query": text,
            "token_id": m.token_id,
            "token": vocab.text(m.token_id),
            "exact": m.exact,
            "layer": hit.layer,
            # its expert, among experts; a dictionary's feature
            **record_fields(hit.neuron, engine.info.experts(hit.layer), dictionaries.get(hit.layer)),
            "dot": hit.dot,
        }
        for text, matches in queries
        for m in matches
        for hit in found[m.token_id]
    ]


def layer_rows(neurons: list[LayerNeurons], settings: ScanSettings) -> list[dict]:
    """One row per layer: max-dot quantiles, kurtosis, standout and one-token counts
    (engine.data.summary); a dictionary's rows count ``n_features``."""
    from engine.data.summary import summarise

    rows = [asdict(summarise(layer)) for layer in neurons]
    if settings.units.is_dictionary:
        rows = [{("n_features" if key == "n_neurons" else key): v for key, v in row.items()} for row in rows]
    return rows


def probe_rows(
    engine: NeuronEngine,
    firing: PromptFiring,
    promoted: dict[tuple[int, int], tuple[int, int]],
    settings: ScanSettings,
) -> list[dict]:
    """One row per token of the text: per layer the units that fired hardest for themselves
    (activation over the unit's own scale), each with the token its weights promote most and the
    one they suppress most when the layer's scan is at hand."""
    vocab = engine.vocabulary
    dictionaries = {layer: info.name for layer, info in engine.dictionary_infos(settings.units).items()}

    def token(token_id: int) -> dict:
        return {"token_id": token_id, "token": vocab.text(token_id)}

    rows = []
    for position, token_id in enumerate(firing.token_ids.tolist()):
        per_layer = []
        for index, layer in enumerate(firing.layers):
            experts, dictionary = engine.info.experts(layer), dictionaries.get(layer)
            units = []
            for rank, unit in enumerate(firing.neurons[position, index].tolist()):
                known = promoted.get((layer, unit))
                units.append(
                    {
                        **record_fields(unit, experts, dictionary),
                        "activation": float(firing.activations[position, index, rank]),
                        "relative": float(firing.relative[position, index, rank]),
                        "promotes": None if known is None else token(known[0]),
                        "suppresses": None if known is None else token(known[1]),
                    }
                )
            per_layer.append({"layer": layer, "units": units})
        rows.append(
            {
                "position": position,
                **token(int(token_id)),
                # position 0 and special tokens: on another scale, shown apart by the explorer
                "set_apart": bool(firing.marked[position]),
                "layers": per_layer,
            }
        )
    return rows
