"""What each MCP tool answers, as plain functions of the engine: the same rows the matching command
writes (``tui.answers``, the engine's records), computed in a worker thread. Long ones take
``report`` (progress) and ``cancelled`` (polled by the engine between chunks); bad input raises
``UserError`` with one line, which the server hands back as a tool error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from engine.columns import COLUMNS, SORT_ORDER, column_for
from engine.data.evidence import LayerActivations
from engine.data.neurons import LayerNeurons
from engine.data.progress import ActivationProgress, AttributionProgress, ScanProgress
from engine.errors import UserError
from engine.neuron_engine import AnyCorpus, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tui.answers import chosen_layers, layer_rows, probe_rows, token_rows
from tui.filtering import FilterError, neuron_order, parse_filter

Report = Callable[[float, float | None, str], None]
EvidenceFound = tuple[LayerActivations, dict] | None  # a layer's evidence and what it read
Cancelled = Callable[[], bool]
SUMMARY_TOKENS = 5  # tokens per list in layer_neurons' summary records
CPU_TOKEN_CAP = 50_000  # a pass run for evidence on a CPU reads this much, as the explorer's does


@dataclass(frozen=True)
class Served:
    """What the server was started on: one engine, one set of scan settings, one corpus."""

    engine: NeuronEngine
    settings: ScanSettings
    corpus_spec: str | None = None
    max_tokens: int | None = None  # what a pass run for evidence reads (None: as the explorer's)

    @property
    def unit(self) -> str:
        return "feature" if self.settings.units.is_dictionary else "neuron"


# --- progress, as a fraction of the work named in a few words -----------------------------------
def scan_listener(report: Report, layers: list[int]) -> Callable[[ScanProgress], None]:
    """Scan progress of several layers as one count: layers done, plus the running one's share."""
    place = {layer: index for index, layer in enumerate(layers)}

    def heard(progress: ScanProgress) -> None:
        index = place.get(progress.layer if progress.layer is not None else -1, 0)
        if progress.stage == "loading":
            report(index, len(layers), "loading the model's weights")
        elif progress.stage == "scanning":
            share = progress.fraction
            report(index + share, len(layers), f"scanning layer {progress.layer}: {share:.0%}")
        else:  # cached or done
            report(index + 1, len(layers), f"layer {progress.layer} {progress.stage}")

    return heard


def inputs_listener(report: Report, layer: int) -> Callable[[ScanProgress], None]:
    """The input side of a layer (seconds to minutes the first time), after its scan."""

    def heard(progress: ScanProgress) -> None:
        if progress.stage in ("scanning", "loading"):
            report(1, 1, f"input side of layer {layer}: computing")

    return heard


def pass_listener(report: Report) -> Callable[[ActivationProgress], None]:
    def heard(progress: ActivationProgress) -> None:
        words = {"running": "reading the corpus", "loading": "loading the model"}.get(progress.stage)
        total = progress.total_tokens or None
        report(progress.done_tokens, total, f"corpus pass: {words or progress.stage}")

    return heard


def attribution_listener(report: Report) -> Callable[[AttributionProgress], None]:
    def heard(progress: AttributionProgress) -> None:
        report(progress.done, progress.total or None, f"attribution: {progress.stage}")

    return heard


# --- layers and neurons ---------------------------------------------------------------------
def derived(
    served: Served, layers: list[int], report: Report, cancelled: Cancelled, inputs: bool = False
) -> list[LayerNeurons]:
    """The layers scanned (from the cache, or computed with progress), each derived against the
    null baseline, with the input side when ``inputs`` (the neurons' records carry it)."""
    engine, settings = served.engine, served.settings
    listener = scan_listener(report, layers)
    results = [engine.layer(layer, settings, listener=listener, cancelled=cancelled) for layer in layers]
    engine.null_baseline(settings)
    found = []
    for result in results:
        side = None
        if inputs and not settings.units.is_dictionary:
            try:
                side = engine.inputs(result.layer, settings, listener=inputs_listener(report, result.layer))
            except UserError as error:  # weights without an input side: the records say nothing of it
                engine.warn(f"records carry no input side: {error}")
        found.append(engine.derive(result, settings, inputs=side))
    return found


def list_layers(served: Served) -> dict:
    """Every layer, whether its scan is cached and, when it is, its row of ``neuron-tui layers``:
    from the cache alone (the model is not loaded for it)."""
    engine, settings = served.engine, served.settings
    info = engine.info
    wanted = engine.unit_layers(settings)
    dictionaries = engine.dictionary_infos(settings.units)
    with_null = engine.has_null_baseline(settings)
    layers = []
    for layer in range(info.n_layers) if wanted is None else wanted:
        cached = engine.cached_layer(layer, settings)
        row = None
        if cached is not None and with_null:
            row = layer_rows([engine.derive(cached, settings)], settings)[0]
        width = dictionaries[layer].d_sae if layer in dictionaries else info.width(layer)
        entry = {"layer": layer, "units": width, "scanned": cached is not None, "summary": row}
        if info.experts(layer) is not None:
            entry["experts"] = info.experts(layer).n_routed  # type: ignore[union-attr]
        layers.append(entry)
    return {
        "model": info.name,
        "fingerprint": engine.fingerprint,
        "n_layers": info.n_layers,
        "unit": served.unit,
        "dictionary": settings.units.name if settings.units.is_dictionary else None,
        "model_loaded": engine.source_loaded,
        "cache": None if engine.cache_directory is None else str(engine.cache_directory),
        "layers": layers,
    }


def listing(served: Served, layer: int, sort: str, where: str) -> tuple[str, list]:
    """The sort column's name and the filter's conditions, checked before any scan."""
    check_layers(served, [layer])
    column = column_for(sort)
    if column is None or column.name not in SORT_ORDER:
        raise UserError(f"unknown sort {sort!r}: use one of {', '.join(SORT_ORDER)}")
    try:
        return column.name, parse_filter(where)
    except FilterError as error:
        raise UserError(str(error)) from None


def layer_neurons(
    served: Served, neurons: LayerNeurons, sort: str, where: str, limit: int, offset: int, full: bool
) -> dict:
    """A layer's units in ``sort`` order passing the ``where`` conditions, ``limit`` of them from
    ``offset``: full scan records, or (``full`` False) without the input side and with the first
    few tokens of each list."""
    column, conditions = listing(served, neurons.layer, sort, where)
    found = cached_evidence(served, neurons.layer)
    if found is not None:  # the corpus columns (lift, density...) filled in, as the explorer does
        neurons = served.engine.derive(
            neurons.result, served.settings, evidence=found[0], inputs=neurons.inputs
        )
    for name in {column, *(condition.field for condition in conditions)}:
        if COLUMNS[name].values(neurons) is None:
            raise UserError(f"{name} has no values for layer {neurons.layer}: {_why_unknown(name)}")
    order = neuron_order(neurons, column, conditions)
    chosen = order[offset : offset + limit].tolist()
    records = list(served.engine.neuron_records(neurons, chosen, served.settings))
    if not full:
        records = [_summary(record) for record in records]
    return {
        "layer": neurons.layer,
        "unit": served.unit,
        "units": neurons.d_mlp,
        "matched": int(len(order)),
        "sort": column,
        "filter": where,
        "offset": offset,
        "records": records,
    }


def _why_unknown(column: str) -> str:
    if column.startswith("diff_"):
        return "it compares two checkpoints (the explorer's and diff's --against), which the server does not"
    return (
        "it comes from the layer's corpus pass; run it with neuron_detail (evidence='run') on any "
        "of the layer's neurons, then ask again"
    )


def _summary(record: dict) -> dict:
    kept = {key: value for key, value in record.items() if key != "input" and not key.startswith("cos_")}
    for key in ("top", "promote", "suppress"):
        kept[key] = record[key][:SUMMARY_TOKENS]
    return kept


def check_layers(served: Served, layers: list[int]) -> None:
    served.engine.check_layers(layers)
    served.engine.check_unit_layers(layers, served.settings)


def check_unit(served: Served, layer: int, unit: int) -> None:
    """One line for a layer or a unit (neuron, or a dictionary's feature) the model lacks."""
    engine, settings = served.engine, served.settings
    check_layers(served, [layer])
    infos = engine.dictionary_infos(settings.units)
    if layer in infos:
        width = infos[layer].d_sae
        if not 0 <= unit < width:
            raise UserError(f"feature {unit} is out of range: layer {layer} has features 0-{width - 1}")
    else:
        engine.check_neuron(layer, unit)


# --- one unit ---------------------------------------------------------------------------------
def neuron_detail(served: Served, neurons: LayerNeurons, unit: int, evidence: EvidenceFound) -> dict:
    """The unit's scan record (with the input side), its activation record from the corpus pass
    when there is ``evidence``, and its place in the collection."""
    engine, settings = served.engine, served.settings
    layer = neurons.layer
    record = next(iter(engine.neuron_records(neurons, [unit], settings)))
    activations, reading = None, None
    if evidence is not None:
        layer_activations, reading = evidence
        activations = unit_activation_record(served, layer_activations, unit)
    marked = engine.collection(settings.units)
    return {
        "record": record,
        "activations": activations,
        "evidence": reading,
        "marked": (layer, unit) in marked,
        "note": marked.note(layer, unit),
    }


def corpus_of(served: Served) -> AnyCorpus:
    return served.engine.corpus(served.corpus_spec)


def corpus_names(served: Served) -> tuple[str, str | None]:
    """The corpus's name and content hash, without building the default corpus (its hash is known
    once a pass has run over it; None before: no evidence of it can be cached)."""
    engine = served.engine
    if served.corpus_spec is None:
        name = engine.default_corpus_name()
        return name, engine.known_corpus_hash(name)
    corpus = corpus_of(served)
    return corpus.name, corpus.content_hash


def pass_settings(served: Served) -> ActivationSettings:
    """What a pass run for evidence reads: the server's --max-tokens, else as the explorer's
    evidence on demand, the first 50,000 tokens on a CPU (minutes) and the whole corpus on a GPU."""
    if served.max_tokens is not None:
        return ActivationSettings(max_tokens=served.max_tokens)
    return ActivationSettings(max_tokens=CPU_TOKEN_CAP if served.engine.on_cpu else None)


def cached_evidence(served: Served, layer: int) -> EvidenceFound:
    """The layer's evidence in the cache that has read the most of the corpus, and how much it
    read; None when the cache has none."""
    engine = served.engine
    name, digest = corpus_names(served)
    if digest is None:
        return None
    found = engine.best_evidence(layer, digest, pass_settings(served), served.settings)
    if found is None:
        return None
    layer_activations, reading = found
    return layer_activations, {"corpus": name, "corpus_hash": digest, **asdict(reading)}


def run_pass(served: Served, layer: int, report: Report, cancelled: Cancelled) -> EvidenceFound:
    """The layer's corpus pass (resumed where a stopped one left off), then its evidence."""
    corpus = corpus_of(served)
    listener = pass_listener(report)
    served.engine.corpus_pass(
        [layer], corpus, pass_settings(served), served.settings, listener=listener, cancelled=cancelled
    )
    return cached_evidence(served, layer)


def unit_activation_record(served: Served, evidence: LayerActivations, unit: int) -> dict:
    """The unit's record as ``neuron-tui activations`` writes it."""
    from engine.data.evidence_records import activation_records

    engine, settings = served.engine, served.settings
    infos = engine.dictionary_infos(settings.units)
    named = infos[evidence.layer].name if evidence.layer in infos else None
    records = activation_records(
        engine.info.name, engine.vocabulary, evidence, engine.info.experts(evidence.layer), named
    )
    for number, record in enumerate(records):
        if number == unit:
            return record
    raise UserError(f"the evidence of layer {evidence.layer} has no unit {unit}")


# --- questions over a text or the vocabulary --------------------------------------------------
def search_token(served: Served, text: str, layers: str, top: int, exact_only: bool) -> dict:
    """``neuron-tui tokens TEXT``'s rows."""
    chosen = chosen_layers(served.engine, served.settings, layers)
    rows = token_rows(served.engine, served.settings, chosen, [text], top, exact_only)
    return {"query": text, "layers": chosen, "rows": rows}


def probe_text(served: Served, text: str, layers: str, top: int, report: Report) -> dict:
    """``neuron-tui probe --text``'s rows."""
    engine, settings = served.engine, served.settings
    if not text.strip():
        raise UserError("the text is empty: give some text to probe")
    chosen = chosen_layers(engine, settings, layers)
    report(0, None, "running the model on the text (the first call loads it)")
    firing, promoted = engine.probe(text, chosen, top, settings)
    return {"scale": firing.scale, "layers": chosen, "tokens": probe_rows(engine, firing, promoted, settings)}


def attribute_text(
    served: Served,
    text: str,
    layers: str,
    top: int,
    target: str | None,
    report: Report,
    cancelled: Cancelled,
) -> dict:
    """``neuron-tui attribute --text``'s records."""
    from engine.data.attribution_records import attribution_records

    engine, settings = served.engine, served.settings
    if settings.units.is_dictionary:
        raise UserError(
            "attribute_text reads the model's neurons, not a dictionary's features: start the "
            "server without --dictionary for it"
        )
    chosen = chosen_layers(engine, settings, layers)
    found = engine.attribute(
        text, chosen, top, target, listener=attribution_listener(report), cancelled=cancelled
    )
    records = list(attribution_records(engine.vocabulary, found, []))
    return {"layers": chosen, "top": top, "target": target, "positions": records}


def coverage(served: Served, neurons: list[LayerNeurons], show: int) -> dict:
    """``neuron-tui coverage -o F.json``'s document (without its settings)."""
    from engine.data.coverage import compute_coverage, coverage_document

    engine = served.engine
    found = compute_coverage([n.result for n in neurons], engine.null_baseline(served.settings))
    return coverage_document(found, engine.vocabulary, show)


# --- the collection and exports ---------------------------------------------------------------
def get_collection(served: Served, report: Report, cancelled: Cancelled) -> dict:
    """``neuron-tui collection``'s records (empty when nothing is marked yet)."""
    engine, settings = served.engine, served.settings
    marked = engine.collection(settings.units)
    records: list[dict] = []
    if len(marked):
        listener = scan_listener(report, marked.layers())
        engine.null_baseline(settings)
        records = list(engine.collection_records(marked, settings, listener=listener))
    return {"model": engine.info.name, "unit": served.unit, "file": str(marked.path), "records": records}


def mark(served: Served, layer: int, unit: int, note: str | None, marked: bool) -> dict:
    """Mark (with a note when given; an empty note clears it) or unmark: the file every explorer
    and ``neuron-tui collection`` read, changed under its lock."""
    engine, settings = served.engine, served.settings
    check_unit(served, layer, unit)
    collection = engine.collection(settings.units)
    if not marked:
        collection.unmark(layer, unit)
    elif note is not None:
        collection.set_note(layer, unit, note)
    else:
        collection.mark(layer, unit)
    return {
        "layer": layer,
        served.unit: unit,
        "marked": (layer, unit) in collection,
        "note": collection.note(layer, unit),
        "collection_size": len(collection),
    }
