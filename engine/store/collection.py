"""The user's collection: the neurons marked in one model, across layers, each with a note.

A collection is user data, not cache: it lives in its own JSON file under the data directory
(``$NEURON_TUI_DATA_DIR``, else ``$XDG_DATA_HOME/neuron-tui`` or ``~/.local/share/neuron-tui``),
one file per model fingerprint, so clearing or damaging the cache never loses it.

Several explorers may share one file (two panes or two SSH sessions on one GPU box), so nothing is
written from memory: every change is a read-modify-write of that one neuron's entry under a lock
file, written whole or not at all (a temporary file renamed into place), and each explorer reads the
file again whenever it changed on disk. A note outlives its mark (unmarking keeps it; marking the
neuron again brings it back), and each explorer can undo its own last changes. A file that cannot be
read is set aside under a new name, never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from engine.data.neurons import LayerNeurons
from engine.data.tokens import Vocabulary
from engine.errors import UserError
from engine.store.export import neuron_records
from engine.store.location import default_data_dir

FORMAT = 2  # 2: notes of unmarked neurons are kept ("kept_notes"); format 1 files read as they are
NOTE_LIMIT = 500  # characters: a note is a short remark, not a document
LOCK_SECONDS = 10.0  # another explorer holds the lock for milliseconds; this long means it is stuck
UNDO_DEPTH = 100


@dataclass(frozen=True)
class Marked:
    layer: int
    neuron: int
    note: str = ""


@dataclass(frozen=True)
class Entry:
    """What the file holds for one neuron: marked or not, and its note (kept when unmarked)."""

    marked: bool
    note: str = ""


Key = tuple[int, int]
_Stamp = tuple[int, int, int]  # inode, size, modification time: has the file changed on disk?


class Collection:
    """Marked neurons of one model, kept in ``path``; every change goes to the file at once."""

    def __init__(self, path: Path, model: str, fingerprint: str):
        self.path, self.model, self.fingerprint = path, model, fingerprint
        self._entries: dict[Key, Entry] = {}
        self._stamp: _Stamp | None = None
        self._undo: list[tuple[Key, Entry | None, str]] = []  # this explorer's changes, newest last
        self.warning: str | None = None  # set when an unreadable file was set aside
        self._lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_SECONDS)
        self.refresh()

    @classmethod
    def for_model(
        cls, model: str, fingerprint: str, data_dir: Path | None = None, dictionary: str | None = None
    ) -> Collection:
        """The model's collection of neurons, or with ``dictionary`` (its set's fingerprint) the
        collection of that dictionary set's features: a file of its own."""
        folder = (data_dir or default_data_dir()) / "collections"
        name = fingerprint if dictionary is None else f"{fingerprint}-dict{dictionary[:32]}"
        return cls(folder / f"{name}.json", model, fingerprint)

    # --- reading ----------------------------------------------------------------------------
    def _disk_stamp(self) -> _Stamp | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise UserError(f"cannot read the collection {self.path}: {error.strerror}") from None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def refresh(self) -> bool:
        """Read the file again if it changed on disk (another explorer's change); True when it had."""
        if self._disk_stamp() == self._stamp:  # each write renames a new file in: a new inode
            return False
        before = dict(self._entries)
        self._read()
        return self._entries != before

    def _read(self) -> None:
        """Load the file as it is now (the caller holds the lock when it is about to write)."""
        self._stamp = self._disk_stamp()
        if self._stamp is None:
            self._entries = {}
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._entries, self._stamp = {}, None
            return
        except OSError as error:
            raise UserError(f"cannot read the collection {self.path}: {error.strerror}") from None
        try:
            self._entries = _parse(text)
        except (ValueError, KeyError, TypeError):
            self._entries = {}
            aside = self.path.with_name(f"{self.path.stem}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}.json")
            os.replace(self.path, aside)
            self._stamp = None
            self.warning = f"the collection file {self.path} could not be read; it was kept as {aside}"

    def __len__(self) -> int:
        return sum(entry.marked for entry in self._entries.values())

    def __contains__(self, key: Key) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.marked

    def items(self) -> list[Marked]:
        """Every marked neuron, by layer then neuron."""
        return [Marked(*key, entry.note) for key, entry in sorted(self._entries.items()) if entry.marked]

    def in_layer(self, layer: int) -> set[int]:
        return {neuron for (at, neuron), entry in self._entries.items() if at == layer and entry.marked}

    def layers(self) -> list[int]:
        return sorted({layer for (layer, _), entry in self._entries.items() if entry.marked})

    def note(self, layer: int, neuron: int) -> str:
        """The neuron's note, also when it is not marked now (unmarking keeps the note)."""
        entry = self._entries.get((layer, neuron))
        return entry.note if entry is not None else ""

    # --- changing ---------------------------------------------------------------------------
    def toggle(self, layer: int, neuron: int) -> bool:
        """Mark or unmark (as the file has it now); True when the neuron is marked afterwards."""
        after = self._change(
            (layer, neuron),
            lambda entry: Entry(not (entry is not None and entry.marked), entry.note if entry else ""),
            None,
        )
        return after is not None and after.marked

    def mark(self, layer: int, neuron: int) -> None:
        self._change((layer, neuron), lambda entry: Entry(True, entry.note if entry else ""), "mark")

    def unmark(self, layer: int, neuron: int) -> None:
        """Unmark; the note stays, for when the neuron is marked again."""
        self._change((layer, neuron), lambda entry: Entry(False, entry.note if entry else ""), "unmark")

    def set_note(self, layer: int, neuron: int, note: str) -> None:
        """A note marks the neuron too."""
        self._change((layer, neuron), lambda entry: Entry(True, note.strip()[:NOTE_LIMIT]), "note")

    def undo(self) -> str | None:
        """Put back the neuron this explorer changed last, as it was before; what was undone, or
        None when there is nothing to undo."""
        if not self._undo:
            return None
        key, before, what = self._undo.pop()
        self._change(key, lambda _entry: before, what, record=False)
        layer, neuron = key
        return f"{what} of L{layer}/N{neuron}"

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def _change(
        self,
        key: Key,
        change: Callable[[Entry | None], Entry | None],
        what: str | None,
        record: bool = True,
    ) -> Entry | None:
        """Read the file, change ``key``'s entry, write the file: all under the lock, so that
        another explorer's changes to other neurons (or to this one) are never lost. ``what``
        names the change for undo (None: mark or unmark, as it turned out)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._read()
                before = self._entries.get(key)
                after = change(before)
                if after is not None and not after.marked and not after.note:
                    after = None  # nothing left to keep
                if after == before:
                    return after
                entries = dict(self._entries)
                if after is None:
                    entries.pop(key, None)
                else:
                    entries[key] = after
                self._write(entries)
                self._entries = entries
        except Timeout:
            raise UserError(
                f"the collection {self.path} is locked by another process ({self._lock.lock_file}); "
                "try again, or remove the lock file if no other neuron-tui is running"
            ) from None
        except OSError as error:
            reason = error.strerror or error
            raise UserError(f"cannot save the collection to {self.path}: {reason}") from None
        if record:
            if what is None:
                what = "mark" if after is not None and after.marked else "unmark"
            self._undo.append((key, before, what))
            del self._undo[:-UNDO_DEPTH]
        return after

    def _write(self, entries: dict[Key, Entry]) -> None:
        ordered = sorted(entries.items())
        document = {
            "format": FORMAT,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "neurons": [{"layer": k[0], "neuron": k[1], "note": e.note} for k, e in ordered if e.marked],
            "kept_notes": [
                {"layer": k[0], "neuron": k[1], "note": e.note} for k, e in ordered if not e.marked
            ],
        }
        temporary = None
        try:
            fd, temporary = tempfile.mkstemp(prefix=".collection.", suffix=".part", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False, indent=1)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            raise
        self._stamp = self._disk_stamp()


def _parse(text: str) -> dict[Key, Entry]:
    data = json.loads(text)
    entries: dict[Key, Entry] = {}
    for field, marked in (("kept_notes", False), ("neurons", True)):
        for item in data.get(field, []) if field == "kept_notes" else data[field]:
            key = (int(item["layer"]), int(item["neuron"]))
            entries[key] = Entry(marked, str(item.get("note", ""))[:NOTE_LIMIT])
    return entries


def collection_records(
    model: str,
    vocab: Vocabulary,
    collection: Collection,
    layer_neurons: Callable[[int], LayerNeurons],
    k: int | None = None,
) -> Iterator[dict]:
    """One record per marked neuron, by layer then neuron, each with its note; ``layer_neurons``
    gives a layer's derived results (from the cache, or computed)."""
    for layer in collection.layers():
        neurons = layer_neurons(layer)
        chosen = sorted(collection.in_layer(layer))
        # A record names its unit within its expert or dictionary: the note is the flat unit's.
        for unit, record in zip(chosen, neuron_records(model, vocab, neurons, chosen, k=k)):
            record["note"] = collection.note(layer, unit)
            yield record
