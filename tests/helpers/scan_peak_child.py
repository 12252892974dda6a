"""Scan some layers of a model through the engine, then print this process's peak RSS in KiB.

python -m tests.helpers.scan_peak_child MODEL CACHE_DIR FIRST LAST  (from the checkout)
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.child import peak_rss_kib
from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import ScanSettings

if __name__ == "__main__":
    model, cache_dir, first, last = sys.argv[1:5]
    engine = NeuronEngine(EngineOptions(model=model, loader="stream", cache_dir=Path(cache_dir)))
    for _result in engine.layers(list(range(int(first), int(last) + 1)), ScanSettings()):
        pass
    engine.close()
    print(peak_rss_kib())
