"""Cheap, content-based fingerprints of weight files.

Hashing a multi-gigabyte checkpoint on every start would cost seconds, so we hash what identifies it:
its size, its header (for GGUF and safetensors this holds every tensor's name, shape and type) and
evenly spaced samples of its body. Renaming, copying or touching a file keeps the fingerprint;
changing its weights (a fine-tune, another quantisation) changes the sampled bytes and the header.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HEAD_BYTES = 4 << 20
SAMPLE_BYTES = 64 << 10
SAMPLES = 64


def file_fingerprint(path: Path) -> str:
    """Hex digest of the file's size, first 4 MiB, 64 spaced 64 KiB samples and last 64 KiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(size.to_bytes(8, "little"))
    with path.open("rb") as handle:
        digest.update(handle.read(HEAD_BYTES))
        if size > HEAD_BYTES:
            step = max((size - HEAD_BYTES) // SAMPLES, 1)
            for offset in range(HEAD_BYTES, size, step):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(max(size - SAMPLE_BYTES, 0))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def files_fingerprint(paths: list[Path], root: Path) -> str:
    """Fingerprint of several files (a model directory), each named relative to ``root``."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(file_fingerprint(path).encode())
    return digest.hexdigest()
