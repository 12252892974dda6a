"""The MCP server's ``export`` tool: a file an agent asks for, written only under the data
directory's ``exports/`` folder, whatever path it sends (absolute paths, ``..`` and links that
lead out are refused), as the matching command would write it."""

from __future__ import annotations

from pathlib import Path

from engine.data.neurons import LayerNeurons
from engine.errors import UserError
from engine.neuron_engine import NeuronEngine, check_output_path
from tui.answers import layer_rows
from tui.mcp.questions import Report, Served, scan_listener

KINDS = ("scan", "layers", "coverage", "collection")
SUFFIXES = (".jsonl", ".json", ".csv")


def exports_folder() -> Path:
    return NeuronEngine.data_directory() / "exports"


def export_path(relative: str, overwrite: bool = False) -> Path:
    """Where ``relative`` lands under the exports folder; one line when it would land elsewhere,
    cannot be written there, or names a file that exists (without ``overwrite``)."""
    root = exports_folder()
    given = Path(relative)
    if not relative.strip() or given.is_absolute() or ".." in given.parts or relative.startswith("~"):
        raise UserError(
            f"export path {relative[:80]!r} must be a relative file name inside {root}, e.g. layer29.jsonl"
        )
    if given.suffix.lower() not in SUFFIXES:
        raise UserError(f"export path {relative[:80]!r}: end it in .jsonl, .json or .csv")
    try:
        root.mkdir(parents=True, exist_ok=True)
        target = (root / given).resolve()
        if root.resolve() not in target.parents:  # a link inside the folder that leads out of it
            raise UserError(f"export path {relative!r} leads out of {root}: choose another name")
        if target.exists() and not target.is_file():
            raise UserError(f"export path {relative!r} is not a regular file: choose another name")
        if target.exists() and not overwrite:
            raise UserError(f"{target} exists: choose another name, or overwrite it (overwrite=true)")
        target.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as error:  # a part that is a file, a name too long, a NUL byte
        reason = getattr(error, "strerror", None) or error
        raise UserError(f"cannot write the export {relative[:80]!r}: {reason}; choose another name") from None
    check_output_path(str(target))
    return target


def export_collection(served: Served, target: Path, report: Report) -> dict:
    """The collection as ``neuron-tui collection -o`` writes it (its layers scanned if need be)."""
    engine, settings = served.engine, served.settings
    marked = engine.collection(settings.units)
    if not len(marked):
        raise UserError(f"the collection is empty: mark {served.unit}s first (mark_neuron)")
    engine.null_baseline(settings)
    listener = scan_listener(report, marked.layers())
    records = engine.collection_records(marked, settings, listener)
    count = engine.write_records(str(target), records, engine.export_metadata(settings))
    return {"path": str(target), "what": "collection", "count": count}


def export_layers(served: Served, what: str, target: Path, neurons: list[LayerNeurons]) -> dict:
    """Scan records (``neuron-tui scan -o``), layer rows (``layers -o``) or coverage
    (``coverage -o``) of the scanned layers."""
    engine, settings = served.engine, served.settings
    path, metadata = str(target), engine.export_metadata(settings)
    if what == "scan":
        records = (record for layer in neurons for record in engine.neuron_records(layer, None, settings))
        count = engine.write_records(path, records, metadata)
    elif what == "layers":
        count = engine.write_rows(path, layer_rows(neurons, settings), metadata, key="layers")
    elif what == "coverage":
        count = _coverage(served, neurons, path, metadata)
    else:
        raise UserError(f"unknown export {what!r}: use one of {', '.join(KINDS)}")
    return {"path": path, "what": what, "count": count}


def _coverage(served: Served, neurons: list[LayerNeurons], path: str, metadata: dict) -> int:
    """As ``neuron-tui coverage -o``: .json the document, .jsonl/.csv one row per token."""
    from engine.data.coverage import compute_coverage, coverage_document, token_row

    engine = served.engine
    found = compute_coverage([n.result for n in neurons], engine.null_baseline(served.settings))
    if path.lower().endswith(".json"):
        engine.write_document(path, {"settings": metadata, **coverage_document(found, engine.vocabulary, 15)})
        return found.d_vocab
    rows = [token_row(found, engine.vocabulary, t) for t in range(found.d_vocab)]
    return engine.write_rows(path, rows, metadata, key="tokens")
