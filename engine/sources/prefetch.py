"""Reading the next layer's W_out while the current layer is scanned.

Scans walk the layers in order, and reading a layer (memory-mapped pages, widening bf16 or
dequantising to float32) is work the scan's matrix products do not need the cores or the GPU for.
So when layer l is handed out, layer l + 1 is read in a background thread: the scan of l and the
read of l + 1 overlap, and at most two layers' W_out are held at once (the one being scanned, the
one read ahead), however many layers the model has.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


class PrefetchingSource:
    """A model source whose ``mlp_out(l)`` also starts reading layer ``l + 1``.

    Everything else is the wrapped source's own (attribute access passes through).
    """

    def __init__(self, source):
        self._source = source
        self.info = source.info
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuron-tui-read-ahead")
        self._lock = threading.Lock()
        self._ahead: tuple[int, Future] | None = None

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    @property
    def wrapped(self):
        return self._source

    def mlp_out(self, layer: int) -> np.ndarray:
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == layer:
            result = ahead[1].result()
        else:
            if ahead is not None and not ahead[1].cancel():
                # Not the layer asked for (the user jumped) and already being read: wait it out
                # rather than hold two reads beside the layer being scanned, then drop it.
                ahead[1].exception()
            result = self._source.mlp_out(layer)
        # A layer of experts is read an expert at a time (expert_out): never read ahead whole.
        if layer + 1 < self.info.n_layers and self.info.experts(layer + 1) is None:
            with self._lock:
                if self._ahead is None:
                    self._ahead = (layer + 1, self._pool.submit(self._source.mlp_out, layer + 1))
        return result

    def close(self) -> None:
        """Drop what was read ahead and stop the reading thread (waits for a read in progress)."""
        with self._lock:
            self._ahead = None
        self._pool.shutdown(wait=True, cancel_futures=True)
