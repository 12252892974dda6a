"""The input side of layer 1 of a checkpoint through the engine (layer 0's first, so that compiling
and first imports are behind): print the resident memory before it and the peak during it, in KiB.

python -m tests.helpers.inputs_peak_child MODEL CACHE_DIR  (from the checkout)
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ScanSettings


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


if __name__ == "__main__":
    model, cache_dir = sys.argv[1:3]
    engine = NeuronEngine(EngineOptions(model=model, loader="stream", cache_dir=Path(cache_dir)))
    engine.inputs(0, ScanSettings())
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    engine.inputs(1, ScanSettings())
    print(before, _status("VmHWM"))
