"""Where the lenses fitted here live: user data, not cache.

A fit takes minutes on a GPU and hours on a CPU, so its lens is kept beside the collections in the
data directory (``$NEURON_TUI_DATA_DIR``, else ``~/.local/share/neuron-tui``), under the model's
weights fingerprint: clearing or damaging the cache never loses it. A fit in progress keeps one
partial file per rank there, which the next run resumes from. Every file is written whole or not
at all (a temporary file renamed into place).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engine.store.location import default_data_dir

SUFFIX = ".pt"
PARTIAL = ".partial.pt"


def lens_folder(fingerprint: str, data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / "lenses" / fingerprint[:32]


def fitted_lens_path(fingerprint: str, tag: str, data_dir: Path | None = None) -> Path:
    return lens_folder(fingerprint, data_dir) / f"{tag}{SUFFIX}"


def partial_path(fingerprint: str, tag: str, rank: int, world: int, data_dir: Path | None = None) -> Path:
    return lens_folder(fingerprint, data_dir) / f"{tag}.rank{rank}of{world}{PARTIAL}"


def fitted_lenses(fingerprint: str, data_dir: Path | None = None) -> list[Path]:
    """The finished fits of this model, newest first."""
    folder = lens_folder(fingerprint, data_dir)
    if not folder.is_dir():
        return []
    found = [path for path in folder.glob(f"*{SUFFIX}") if not path.name.endswith(PARTIAL)]
    return sorted(found, key=lambda path: path.stat().st_mtime_ns, reverse=True)


def write_whole(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically: a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
