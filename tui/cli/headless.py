"""The headless commands (scan, layers, tokens, coverage): plain values in, files or stdout out.

Each takes an open engine, the scan settings and the layers, computes what is missing (progress on
stderr) and writes its output. The command line (``tui.cli``) parses and checks the arguments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import asdict

from engine.data.neurons import LayerNeurons
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine, Ranks
from engine.settings import ActivationSettings, FitSettings, ScanSettings
from tui.cli.progress import StderrProgress


def _metadata(engine: NeuronEngine, settings: ScanSettings) -> dict:
    return engine.export_metadata(settings)


def _input_side(engine: NeuronEngine, layer: int, settings: ScanSettings):
    """The layer's input side for its records, or None (said once) where the weights lack it."""
    try:
        return engine.inputs(layer, settings)
    except UserError as error:
        engine.warn(f"records carry no input side: {error}")
        return None


def scan(engine: NeuronEngine, settings: ScanSettings, layers: list[int], output: str) -> int:
    with engine.process_ranks() as ranks:
        if ranks.world > 1:
            return _scan_across_ranks(engine, settings, layers, output, ranks)
    with StderrProgress(layers) as progress:
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
        metadata = _metadata(engine, settings)

        def records():
            # One layer in memory at a time: its records are written before the next is scanned.
            for result in engine.layers(layers, settings, listener=progress):
                neurons = engine.derive(result, settings, inputs=_input_side(engine, result.layer, settings))
                yield from engine.neuron_records(neurons, None, settings)

        count = engine.write_records(output, records(), metadata)
    if output != "-":
        print(f"wrote {count} neurons from {len(layers)} layer(s) to {output}", file=sys.stderr)
    return 0


def _scan_across_ranks(
    engine: NeuronEngine, settings: ScanSettings, layers: list[int], output: str, ranks: Ranks
) -> int:
    """Under torchrun: the engine splits the layers over the ranks; rank 0 writes the output,
    which is byte-identical to one process's."""

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    with StderrProgress(layers) as progress:
        results = engine.scan_across_ranks(layers, settings, ranks, listener=progress, said=say)
        if results is None:
            return 0  # another rank writes
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
    metadata = _metadata(engine, settings)

    def records() -> Iterator[dict]:
        for result in results:
            neurons = engine.derive(result, settings, inputs=_input_side(engine, result.layer, settings))
            yield from engine.neuron_records(neurons, None, settings)

    count = engine.write_records(output, records(), metadata)
    if output != "-":
        print(
            f"wrote {count} neurons from {len(layers)} layer(s) to {output} ({ranks.world} ranks)",
            file=sys.stderr,
        )
    return 0


def collection(engine: NeuronEngine, settings: ScanSettings, output: str) -> int:
    """The collection marked in the explorer, with notes, statistics and top tokens."""
    marked = engine.collection()
    if marked.warning:
        print(f"warning: {marked.warning}", file=sys.stderr)
    if not len(marked):
        raise UserError(
            f"the collection of {engine.info.name} is empty: mark neurons in the explorer with space"
        )
    layers = marked.layers()
    with StderrProgress(layers) as progress:
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
        records = engine.collection_records(marked, settings, listener=progress)
        count = engine.write_records(output, records, _metadata(engine, settings))
    if output != "-":
        print(f"wrote {count} neurons from {len(layers)} layer(s) to {output}", file=sys.stderr)
    return 0


def _all_layers(engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> list[LayerNeurons]:
    with StderrProgress(layers) as progress:
        results = list(engine.layers(layers, settings, listener=progress))
        engine.null_baseline(settings)  # before the layers: every record needs it (held by the engine)
    return [engine.derive(result, settings) for result in results]


def layer_table(engine: NeuronEngine, settings: ScanSettings, layers: list[int], output: str) -> int:
    from engine.data.summary import summarise

    rows = [asdict(summarise(neurons)) for neurons in _all_layers(engine, settings, layers)]
    metadata = _metadata(engine, settings)
    if output == "-":
        columns = [
            "layer",
            "p50",
            "p90",
            "p99",
            "max",
            "kurtosis_p99",
            "n_standout",
            "n_prediction",
            "n_suppression",
        ]
        print(f"# {metadata['model']} · projection {metadata['projection']}")
        print("\t".join(columns))
        for row in rows:
            print("\t".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    else:
        engine.write_rows(output, rows, metadata, key="layers")
    return 0


def tokens(
    engine: NeuronEngine,
    settings: ScanSettings,
    layers: list[int],
    texts: list[str],
    top: int,
    exact_only: bool,
    output: str,
) -> int:
    from engine.data.token_index import TokenIndex

    vocab = engine.vocabulary
    index = TokenIndex(vocab)
    queries = []
    for text in texts:
        matches = [m for m in index.find(text) if m.exact or not exact_only]
        if not matches:
            raise UserError(
                f"no token matches {text!r}: check the spelling (a leading space matters, e.g. ' the')"
            )
        queries.append((text, matches))
    # Exact from the weights: one float64 product per layer, no scan needed (seconds, not minutes).
    token_ids = sorted({m.token_id for _, matches in queries for m in matches})
    found = engine.exact_token_neurons(token_ids, layers, top, settings)
    rows = [
        {
            "query": text,
            "token_id": m.token_id,
            "token": vocab.text(m.token_id),
            "exact": m.exact,
            "layer": hit.layer,
            "neuron": hit.neuron,
            "dot": hit.dot,
        }
        for text, matches in queries
        for m in matches
        for hit in found[m.token_id]
    ]
    if output == "-":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        engine.write_rows(output, rows, _metadata(engine, settings), key="tokens")
    return 0


def coverage(engine: NeuronEngine, settings: ScanSettings, layers: list[int], show: int, output: str) -> int:
    from engine.data.coverage import compute_coverage, coverage_document, token_row

    neurons = _all_layers(engine, settings, layers)
    found = compute_coverage([n.result for n in neurons], engine.null_baseline(settings))
    vocab = engine.vocabulary
    metadata = _metadata(engine, settings)
    document = coverage_document(found, vocab, show)
    if output == "-":
        _print_coverage(document, metadata)
    elif output.lower().endswith(".json"):
        engine.write_document(output, {"settings": metadata, **document})
    else:
        rows = [token_row(found, vocab, t) for t in range(found.d_vocab)]
        engine.write_rows(output, rows, metadata, key="tokens")
    return 0


def _print_coverage(document: dict, metadata: dict) -> None:
    from engine.data.tokens import display_token

    overall = document["overall"]
    print(
        f"# {metadata['model']} · projection {metadata['projection']} · "
        f"covered = best |dot|/|w| > null p99 = {document['null_p99']:.4f}"
    )
    print("layer\tcovered\tshare")
    for row in document["layers"]:
        print(f"{row['layer']}\t{row['covered']}\t{row['share']:.2%}")
    print(f"all\t{overall['covered']}\t{overall['share']:.2%} of {overall['tokens']} tokens")
    for title, key in (("best covered", "best"), ("least covered", "worst")):
        print(f"# {title}: token, best |dot|/|w| (x null p99), layer:neuron")
        for row in document[key]:
            print(
                f"{display_token(row['token'])!s}\t{row['best_unit_dot']:.4f} (x{row['vs_null_p99']:.2f})"
                f"\tL{row['best_layer']}:{row['best_neuron']}"
            )


def activations(
    engine: NeuronEngine,
    settings: ScanSettings,
    layers: list[int],
    corpus_spec: str | None,
    activation_settings: ActivationSettings,
    output: str,
) -> int:
    """The activation pass (split across torchrun's ranks when there are several); rank 0 writes."""
    if output != "-" and not output.lower().endswith((".jsonl", ".json")):
        raise UserError(f"activations write .jsonl or .json (each record nests its examples), not {output}")
    corpus = engine.corpus(corpus_spec)  # every corpus check before torch is even imported

    from engine.data.evidence_records import activation_records
    from tui.cli.progress import ActivationStderrProgress

    with engine.process_ranks() as ranks:
        prefix = f"rank {ranks.rank}/{ranks.world}: " if ranks.world > 1 else ""
        results = engine.corpus_pass(
            layers, corpus, activation_settings, settings, ranks, ActivationStderrProgress(prefix)
        )
    if results is None:
        return 0  # another rank writes
    info, vocab = engine.info, engine.vocabulary
    any_result = next(iter(results.values()))
    metadata = {
        **_metadata(engine, settings),
        "corpus": corpus.name,
        "corpus_hash": corpus.content_hash,
        "documents": corpus.n_documents,
        "positions": any_result.n_positions,
        **asdict(activation_settings),
    }

    def records():
        for layer in layers:
            yield from activation_records(info.name, vocab, results[layer])

    count = engine.write_records(output, records(), metadata)
    if output != "-":
        print(f"wrote {count} neurons from {len(layers)} layer(s) to {output}", file=sys.stderr)
    return 0


def fit_lens(
    engine: NeuronEngine, corpus_spec: str | None, prompts: int, max_seq_len: int, dim_batch: int
) -> int:
    """Fit a Jacobian lens (split across torchrun's ranks when there are several); rank 0 says where
    it is."""
    fit_settings = FitSettings(prompts=prompts, max_seq_len=max_seq_len, dim_batch=dim_batch)
    corpus = engine.corpus(corpus_spec)  # every check before torch is imported

    from tui.cli.progress import FitStderrProgress

    with engine.process_ranks() as ranks:
        prefix = f"rank {ranks.rank}/{ranks.world}: " if ranks.world > 1 else ""
        say = f"{prefix}loading the model to fit a Jacobian lens on {corpus.name}"
        print(say, file=sys.stderr, flush=True)
        path = engine.fit_lens(corpus, fit_settings, ranks, FitStderrProgress(prefix))
    if path is None:
        return 0  # rank 0 writes
    lens = engine.open_lens(f"jacobian:{path}")
    lens_file = engine.lens_file(lens)
    assert lens_file is not None
    print(
        f"{lens_file.description}: {path}\n"
        f"read through it with --lens jacobian (the newest fit of this model) or --lens jacobian:{path}",
        file=sys.stderr,
    )
    return 0


def diff(engine: NeuronEngine, settings: ScanSettings, layers: list[int], against: str, output: str) -> int:
    """This model against another checkpoint of its shape, neuron by neuron: one record per neuron
    (JSONL on stdout for -), a summary line per layer on stderr."""
    from dataclasses import replace

    from engine.neuron_engine import NeuronEngine as Engine

    other = Engine(replace(engine.options, model=against))
    try:
        engine.check_comparable(other)  # one line, before either model's weights are read
        lens_file = engine.lens_file(settings.lens)
        if lens_file is not None:  # both read through the same lens, the first model's
            other.open_lens(f"jacobian:{lens_file.path}")
        metadata = {
            **_metadata(engine, settings),
            "against": other.info.name,
            "against_fingerprint": other.fingerprint,
        }
        rows: list[dict] = []
        with StderrProgress(layers) as progress:
            engine.null_baseline(settings)
            other.null_baseline(settings)
            for layer in layers:
                found = engine.diff(layer, other, settings, listener=progress)
                rows += _diff_rows(engine, other, settings, found)
                progress.say(_diff_line(found.summary()))
    finally:
        other.close()
    if output == "-":
        for row in rows:
            print(json.dumps({**row, "settings": metadata}, ensure_ascii=False))
        return 0
    count = engine.write_rows(output, rows, metadata, key="neurons")
    print(f"wrote {count} neurons from {len(layers)} layer(s) to {output}", file=sys.stderr)
    return 0


def _diff_line(summary: dict) -> str:
    return (
        f"layer {summary['layer']}: cos p50 {summary['cos_p50']:.4f} (min {summary['cos_min']:.4f}), "
        f"{summary['changed']} turned > 2.6°, top token kept {100 * summary['top_kept_share']:.1f}%, "
        f"promote Jaccard {summary['promote_jaccard_mean']:.3f}, "
        f"suppress {summary['suppress_jaccard_mean']:.3f}, "
        f"max-dot change p50 {summary['max_dot_change_p50']:+.4f}"
    )


def _diff_rows(engine: NeuronEngine, other: NeuronEngine, settings: ScanSettings, found) -> list[dict]:
    k = settings.top_k
    mine, theirs = engine.neurons(found.layer, settings), other.neurons(found.layer, settings)
    vocab, their_vocab = engine.vocabulary, other.vocabulary
    rows = []
    for neuron in range(found.d_mlp):
        a, b = mine.result, theirs.result
        rows.append(
            {
                "model": engine.info.name,
                "against": other.info.name,
                "layer": found.layer,
                "neuron": neuron,
                "cos": _number(found.cosine[neuron]),
                "max_dot": float(a.max_dot[neuron]),
                "max_dot_against": float(b.max_dot[neuron]),
                "max_dot_change": float(found.max_dot_change[neuron]),
                "null_z": float(mine.null_z[neuron]) if mine.null_z is not None else None,
                "null_z_against": float(theirs.null_z[neuron]) if theirs.null_z is not None else None,
                "null_z_change": float(found.null_z_change[neuron]),
                "promote_jaccard": float(found.promote_jaccard[neuron]),
                "suppress_jaccard": float(found.suppress_jaccard[neuron]),
                "top_kept": bool(found.top_kept[neuron]),
                "top": vocab.text(int(a.top_ids[neuron, 0])),
                "top_dot": float(a.top_dots[neuron, 0]),
                "top_against": their_vocab.text(int(b.top_ids[neuron, 0])),
                "top_dot_against": float(b.top_dots[neuron, 0]),
                "promote": [vocab.text(int(t)) for t in a.promote_ids[neuron, :k]],
                "promote_against": [their_vocab.text(int(t)) for t in b.promote_ids[neuron, :k]],
                "suppress": [vocab.text(int(t)) for t in a.suppress_ids[neuron, :k]],
                "suppress_against": [their_vocab.text(int(t)) for t in b.suppress_ids[neuron, :k]],
            }
        )
    return rows


def _number(value: float) -> float | None:
    return None if value != value else float(value)
