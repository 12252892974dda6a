"""Scan some layers of a model through the engine, then print this process's peak RSS in KiB.

python tests/scan_peak_child.py MODEL CACHE_DIR FIRST LAST
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: find bench/

from bench.child import peak_rss_kib  # noqa: E402
from engine.neuron_engine import EngineOptions, NeuronEngine  # noqa: E402
from engine.settings import ScanSettings  # noqa: E402

if __name__ == "__main__":
    model, cache_dir, first, last = sys.argv[1:5]
    engine = NeuronEngine(EngineOptions(model=model, loader="stream", cache_dir=Path(cache_dir)))
    for _result in engine.layers(list(range(int(first), int(last) + 1)), ScanSettings()):
        pass
    engine.close()
    print(peak_rss_kib())
