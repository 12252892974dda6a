"""Scan some layers of a model through the engine, then print this process's peak RSS in KiB.

python tests/scan_peak_child.py MODEL CACHE_DIR FIRST LAST
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.session import EngineOptions, NeuronEngine
from engine.settings import ScanSettings


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    model, cache_dir, first, last = sys.argv[1:5]
    engine = NeuronEngine(EngineOptions(model=model, loader="stream", cache_dir=Path(cache_dir)))
    for _result in engine.layers(list(range(int(first), int(last) + 1)), ScanSettings()):
        pass
    engine.close()
    print(peak_rss_kib())
