"""The user's collection: the neurons marked in one model, across layers, each with a note.

A collection is user data, not cache: it lives in its own JSON file under the data directory
(``$NEURON_TUI_DATA_DIR``, else ``$XDG_DATA_HOME/neuron-tui`` or ``~/.local/share/neuron-tui``),
one file per model fingerprint, so clearing or damaging the cache never loses it. Every change is
written at once, whole or not at all (a temporary file renamed into place); a file that cannot be
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

from engine.errors import UserError
from engine.export import neuron_records
from engine.neurons import LayerNeurons
from engine.tokens import Vocabulary

DATA_ENV = "NEURON_TUI_DATA_DIR"
FORMAT = 1
NOTE_LIMIT = 500  # characters: a note is a short remark, not a document


def default_data_dir() -> Path:
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "neuron-tui"


@dataclass(frozen=True)
class Marked:
    layer: int
    neuron: int
    note: str = ""


class Collection:
    """Marked neurons of one model, kept in ``path``; changes are saved as they happen."""

    def __init__(self, path: Path, model: str, fingerprint: str):
        self.path, self.model, self.fingerprint = path, model, fingerprint
        self._items: dict[tuple[int, int], str] = {}
        self.warning: str | None = None  # set when an unreadable file was set aside
        self._load()

    @classmethod
    def for_model(cls, model: str, fingerprint: str, data_dir: Path | None = None) -> Collection:
        folder = (data_dir or default_data_dir()) / "collections"
        return cls(folder / f"{fingerprint}.json", model, fingerprint)

    # --- reading ----------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as error:
            raise UserError(f"cannot read the collection {self.path}: {error.strerror}") from None
        try:
            data = json.loads(text)
            for entry in data["neurons"]:
                layer, neuron = int(entry["layer"]), int(entry["neuron"])
                self._items[(layer, neuron)] = str(entry.get("note", ""))[:NOTE_LIMIT]
        except (ValueError, KeyError, TypeError):
            self._items.clear()
            aside = self.path.with_name(f"{self.path.stem}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}.json")
            os.replace(self.path, aside)
            self.warning = f"the collection file {self.path} could not be read; it was kept as {aside}"

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._items

    def items(self) -> list[Marked]:
        """Every marked neuron, by layer then neuron."""
        return [Marked(layer, neuron, note) for (layer, neuron), note in sorted(self._items.items())]

    def in_layer(self, layer: int) -> set[int]:
        return {neuron for (marked_layer, neuron) in self._items if marked_layer == layer}

    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self._items})

    def note(self, layer: int, neuron: int) -> str:
        return self._items.get((layer, neuron), "")

    # --- changing ---------------------------------------------------------------------------
    def toggle(self, layer: int, neuron: int) -> bool:
        """Mark or unmark; True when the neuron is marked afterwards."""
        key = (layer, neuron)
        if key in self._items:
            del self._items[key]
        else:
            self._items[key] = ""
        self.save()
        return key in self._items

    def unmark(self, layer: int, neuron: int) -> None:
        if self._items.pop((layer, neuron), None) is not None:
            self.save()

    def set_note(self, layer: int, neuron: int, note: str) -> None:
        """A note marks the neuron too."""
        self._items[(layer, neuron)] = note.strip()[:NOTE_LIMIT]
        self.save()

    def save(self) -> None:
        document = {
            "format": FORMAT,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "neurons": [{"layer": m.layer, "neuron": m.neuron, "note": m.note} for m in self.items()],
        }
        temporary = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".collection.", suffix=".part", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False, indent=1)
                handle.write("\n")
            os.replace(temporary, self.path)
        except OSError as error:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            reason = error.strerror or error
            raise UserError(f"cannot save the collection to {self.path}: {reason}") from None


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
        for record in neuron_records(model, vocab, neurons, sorted(collection.in_layer(layer)), k=k):
            record["note"] = collection.note(layer, record["neuron"])
            yield record
