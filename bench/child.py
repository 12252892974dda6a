"""Run one neuron-tui command in this process and report its peak resident memory on stderr."""

from __future__ import annotations

import resource
import sys

from tui.main import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
    sys.exit(code)
