"""Run one neuron-tui command in this process and report its peak resident memory on stderr."""

from __future__ import annotations

import sys
from pathlib import Path

from tui.cli import main


def peak_rss_kib() -> int:
    """VmHWM: this process's own high-water mark (ru_maxrss would include the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    code = main(sys.argv[1:])
    print(f"peak_rss_kib={peak_rss_kib()}", file=sys.stderr)
    sys.exit(code)
