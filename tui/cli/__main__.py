"""``python -m tui.cli``: the command line, as the ``neuron-tui`` script runs it."""

import sys

from tui.cli import main

sys.exit(main())
