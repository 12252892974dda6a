"""Neuron records and the files they are written to (JSONL, JSON, CSV).

Records carry exact token text (decoded UTF-8, ``<0xNN>`` for undecodable bytes). CSV cells holding
token text are neutralised against spreadsheet formula injection; JSON keeps the text exact.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from engine.columns import exported_columns
from engine.data.experts import record_fields
from engine.data.inputs import IO_CLASSES, LayerInputs
from engine.data.model import ModelInfo
from engine.data.neurons import LayerNeurons
from engine.data.tokens import Vocabulary
from engine.errors import UserError
from engine.settings import ScanSettings

FORMATS = (".jsonl", ".json", ".csv")
# Names of this process's own open files, whatever they are (a pipe, a terminal, a file after `>`).
_OWN_FILES, _OWN_FOLDERS = ("/dev/stdout", "/dev/stderr"), ("/dev/fd/", "/proc/self/fd/")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# How a layer of experts' layer-wide numbers (histograms, token search, coverage) pool its experts.
POOLING = "over all neurons of the layer's experts, shared expert included"


def export_settings(info: ModelInfo, settings: ScanSettings) -> dict:
    """What produced the results: the model and every setting. (Each neuron record names the
    device that computed its layer, which a warm run reads from the cache.)"""
    found = {"model": info.name, "fingerprint": info.fingerprint, **settings.to_dict()}
    if info.layer_experts is not None:  # records carry "expert" (engine.data.experts)
        found["experts"] = {"per_token": info.experts_per_token, "pooled": POOLING}
    return found


def _tokens(ids: np.ndarray, dots: np.ndarray, vocab: Vocabulary) -> list[dict]:
    return [
        {"token_id": int(token_id), "token": vocab.text(int(token_id)), "dot": float(dot)}
        for token_id, dot in zip(ids.tolist(), dots.tolist())
    ]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def neuron_records(
    model: str,
    vocab: Vocabulary,
    neurons: LayerNeurons,
    chosen: Sequence[int] | None = None,
    k: int | None = None,
) -> Iterator[dict]:
    """One record per neuron of the layer (or of ``chosen``, in that order), with its first ``k``
    tokens of each list (all that were kept by default)."""
    result = neurons.result
    extra = exported_columns()
    experts = result.experts
    for neuron in range(result.d_mlp) if chosen is None else chosen:
        stats = neurons.stats(neuron)
        record = {
            "model": model,
            "layer": stats.layer,
            **record_fields(stats.neuron, experts, result.dictionary),  # neuron (its expert) or feature
            "max_dot": stats.max_dot,
            "top": _tokens(result.top_ids[neuron, :k], result.top_dots[neuron, :k], vocab),
            "promote": _tokens(result.promote_ids[neuron, :k], result.promote_dots[neuron, :k], vocab),
            "suppress": _tokens(result.suppress_ids[neuron, :k], result.suppress_dots[neuron, :k], vocab),
            "norm": stats.norm,
            "mean": stats.mean,
            "std": stats.std,
            "skew": _finite(stats.skew),
            "kurtosis": _finite(stats.kurtosis),
            "class": stats.klass,
            "device": result.device,
            "products": result.products,
        }
        if stats.null_z is not None:
            record["null_z"] = stats.null_z
            record["null_pct"] = stats.null_pct
        for column in extra:
            value = column.read(neurons)[neuron]
            number = None if column.kind == "class" else _finite(float(value))
            if column.kind == "class":
                record[column.name] = str(value)
            else:
                record[column.name] = int(number) if column.whole and number is not None else number
        if neurons.inputs is not None:
            record |= input_fields(neurons.inputs, neuron, vocab, k)
        if neurons.neighbours is not None:
            record |= neighbour_fields(neurons, neuron)
        yield record


def neighbour_fields(neurons: LayerNeurons, unit: int) -> dict:
    """A feature's closest neurons (or a neuron's closest features) by |cosine| of their write
    directions (engine.dictionaries.neighbours), each with its signed cosine."""
    assert neurons.neighbours is not None
    if neurons.result.dictionary is not None:
        return {
            "closest_neurons": [{"neuron": other, "cos": cos} for other, cos in neurons.neighbours.of(unit)]
        }
    return {
        "closest_features": [{"feature": other, "cos": cos} for other, cos in neurons.neighbours.of(unit)]
    }


def input_fields(inputs: LayerInputs, neuron: int, vocab: Vocabulary, k: int | None = None) -> dict:
    """The input side of one neuron (engine.data.inputs): per input row the tokens whose embeddings
    raise (``plus``) and lower (``minus``) it, the rows' cosines with W_out, and the IO class."""

    def cosines(ids: np.ndarray, values: np.ndarray) -> list[dict]:
        return [
            {"token_id": int(token_id), "token": vocab.text(int(token_id)), "cos": float(value)}
            for token_id, value in zip(ids.tolist(), values.tolist())
        ]

    fields: dict = {"input": {}}
    for row, name in enumerate(inputs.rows):
        fields["input"][name] = {
            "plus": cosines(inputs.plus_ids[row, neuron, :k], inputs.plus_cos[row, neuron, :k]),
            "minus": cosines(inputs.minus_ids[row, neuron, :k], inputs.minus_cos[row, neuron, :k]),
        }
        fields[f"cos_{name}_out"] = float(inputs.cos_out[row, neuron])
    if inputs.gated:
        fields["cos_gate_up"] = float(inputs.cos_gate_up[neuron])
    fields["io_class"] = IO_CLASSES[int(inputs.io_class[neuron])]
    return fields


def is_stream(path: str) -> bool:
    """A device, a pipe or a socket (``/dev/null``, a named pipe), or a name for one of this
    process's own files (``/dev/stdout``, ``/proc/self/fd/N``): written in place as JSONL, as the
    records come, since nothing can be renamed onto it."""
    target = Path(path).expanduser()
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    if stat.S_ISDIR(mode):
        return False
    name = str(target.absolute())
    return not stat.S_ISREG(mode) or name in _OWN_FILES or name.startswith(_OWN_FOLDERS)


def check_output_path(path: str) -> None:
    """Fail before any work when the output cannot be written."""
    if path == "-":
        return
    target = Path(path).expanduser()
    if is_stream(path):
        if not os.access(target, os.W_OK):
            raise UserError(f"cannot write {path}: permission denied; choose another output path")
        return
    if target.suffix.lower() not in FORMATS:
        raise UserError(
            f"unknown output extension {target.suffix or '(none)'!r} in {path}: "
            "use .jsonl, .json, .csv, - for stdout, or a device or named pipe"
        )
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"output path {path} is a directory: give a file name")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: directory {parent} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise UserError(f"cannot write {path}: permission denied; choose another output path")
    # Permissions, read-only or special file systems (/sys, /proc): only a real file tells.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
    except OSError as error:
        raise UserError(
            f"cannot write {path}: {error.strerror or error}; choose another output path"
        ) from None
    os.close(fd)
    os.unlink(probe)


def neutralise_cell(text: str) -> str:
    """Prefix cells a spreadsheet would run as a formula with a quote."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _csv_rows(records: Iterable[dict], settings: dict) -> Iterator[list]:
    """One row per record; a collection's records add their note as the last column."""
    header_written = False
    extra = [column.name for column in exported_columns()]
    for record in records:
        k = len(record["top"])
        if not header_written:
            with_note = "note" in record
            with_expert = bool(settings.get("experts"))  # a model of experts: an expert column
            features = "feature" in record  # a dictionary's features: feature and dictionary columns
            units = (
                ["dictionary", "feature"] if features else [*(["expert"] if with_expert else []), "neuron"]
            )
            header = ["model", "layer", *units, "max_dot"]
            for rank in range(1, k + 1):
                header += [f"token_{rank}", f"token_id_{rank}", f"dot_{rank}"]
            header += [
                "norm",
                "mean",
                "std",
                "skew",
                "kurtosis",
                "class",
                "null_z",
                "null_pct",
                "projection",
                "lens",
                "dtype",
                "fingerprint",
                "device",
                "products",
                *extra,
            ] + (["note"] if with_note else [])
            yield header
            header_written = True
        if features:
            unit = [neutralise_cell(record["dictionary"]), record["feature"]]
        else:
            unit = [*([record.get("expert", "")] if with_expert else []), record["neuron"]]
        row = [neutralise_cell(record["model"]), record["layer"], *unit, record["max_dot"]]
        for entry in record["top"]:
            row += [neutralise_cell(entry["token"]), entry["token_id"], entry["dot"]]
        row += [
            record["norm"],
            record["mean"],
            record["std"],
            record["skew"],
            record["kurtosis"],
            record["class"],
        ]
        row += [
            record.get("null_z", ""),
            record.get("null_pct", ""),
            settings["projection"],
            settings.get("lens", "logit"),
            settings["dtype"],
            settings["fingerprint"],
            record["device"],
            record["products"],
        ]
        row += [record.get(name, "") for name in extra]
        if with_note:
            row.append(neutralise_cell(record.get("note", "")))
        yield row


def _write_stream(handle: io.TextIOBase, fmt: str, records: Iterable[dict], settings: dict) -> int:
    count = 0
    if fmt == ".jsonl":
        # The settings are the same on every line: encode them once and splice them in.
        tail = ', "settings": ' + json.dumps(settings, ensure_ascii=False) + "}\n"
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False)[:-1] + tail)
            count += 1
    elif fmt == ".json":
        # Streamed: one neuron at a time, so a large scan never sits in memory as a whole.
        handle.write('{"settings": ' + json.dumps(settings, ensure_ascii=False) + ',\n "neurons": [')
        for record in records:
            handle.write(("\n  " if count == 0 else ",\n  ") + json.dumps(record, ensure_ascii=False))
            count += 1
        handle.write("\n ]\n}\n")
    else:
        writer = csv.writer(handle)
        for row in _csv_rows(records, settings):
            writer.writerow(row)
            count += 1
        count = max(count - 1, 0)
    return count


def write_records(path: str, records: Iterable[dict], settings: dict) -> int:
    """Write records to ``path`` (``-`` = JSONL on stdout, a device or pipe: JSONL there); a file
    appears whole or not at all."""
    if path == "-":
        return _write_stream(sys.stdout, ".jsonl", records, settings)  # type: ignore[arg-type]
    check_output_path(path)
    target = Path(path).expanduser()
    fmt = ".jsonl" if is_stream(path) else target.suffix.lower()
    counted: list[int] = []
    _write(
        target,
        lambda handle: counted.append(_write_stream(handle, fmt, records, settings)),
        newline="" if fmt == ".csv" else None,
    )
    return counted[0]


def write_rows(path: str, rows: list[dict], settings: dict, key: str) -> int:
    """Rows to .jsonl (a device or pipe too), .json (``{"settings", key: rows}``) or .csv (a list
    value, such as a row's tokens, goes into one cell as JSON)."""
    check_output_path(path)
    target = Path(path).expanduser()
    fmt = ".jsonl" if is_stream(path) else target.suffix.lower()

    def write(handle: io.TextIOBase) -> None:
        if fmt == ".jsonl":
            for row in rows:
                handle.write(json.dumps({**row, "settings": settings}, ensure_ascii=False) + "\n")
        elif fmt == ".json":
            json.dump({"settings": settings, key: rows}, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        else:
            writer = csv.writer(handle)
            columns = list(rows[0]) if rows else []
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(value) for value in row.values()])

    _write(target, write, newline="" if fmt == ".csv" else None)
    return len(rows)


def _cell(value):
    if isinstance(value, list):
        value = json.dumps(value, ensure_ascii=False)
    return neutralise_cell(value) if isinstance(value, str) else value


class _WriteFailed(Exception):
    """An OSError while writing the output itself (not while computing what goes into it)."""


class _CheckedWriter:
    def __init__(self, handle: io.TextIOBase):
        self._handle = handle

    def write(self, text: str) -> int:
        try:
            return self._handle.write(text)
        except OSError as error:
            raise _WriteFailed(error) from error


def _write(target: Path, write, newline: str | None) -> None:
    """A stream written in place, anything else whole or not at all."""
    if is_stream(str(target)):
        _stream_write(target, write)
    else:
        _atomic_write(target, write, newline)


def _stream_write(target: Path, write) -> None:
    """Straight into a device or pipe, as the content comes: no temporary file beside it. Opened
    to append, so that ``/dev/stdout`` sent to a file (``>>`` too) keeps what is there."""
    try:
        handle = open(target, "a", encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        try:
            write(_CheckedWriter(handle))  # errors computing the content pass through as they are
        finally:
            try:
                handle.close()
            except OSError as error:
                raise _WriteFailed(error) from error
    except _WriteFailed as failed:
        raise UserError(f"cannot write {target}: {_reason(failed)}") from None


def _reason(failed: _WriteFailed) -> str:
    cause = failed.__cause__
    return cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)


def _atomic_write(target: Path, write, newline: str | None) -> None:
    """Write through a temporary file in the same directory, renamed into place when complete.
    A failure to write (a full disk, a vanished directory) leaves no file and names the path."""
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as error:
        raise UserError(
            f"cannot write {target}: {error.strerror or error}; choose another output path"
        ) from None
    try:
        handle = os.fdopen(fd, "w", encoding="utf-8", newline=newline)
        try:
            write(_CheckedWriter(handle))  # errors computing the content pass through as they are
        finally:
            try:
                handle.close()  # flushes: a full disk may show only here
            except OSError as error:
                raise _WriteFailed(error) from error
        try:
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except OSError as error:
            raise _WriteFailed(error) from error
    except _WriteFailed as failed:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(f"cannot write {target}: {_reason(failed)}; nothing was written") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _dump(document: dict, handle: io.TextIOBase) -> None:
    json.dump(document, handle, ensure_ascii=False, indent=1)
    handle.write("\n")


def write_document(path: str, document: dict) -> None:
    """One JSON document, written whole or not at all."""
    check_output_path(path)
    _write(Path(path).expanduser(), lambda handle: _dump(document, handle), newline=None)
