"""The headless commands, one module each with its own options: plain values in, files or stdout out.

None of them imports Textual (an import-linter contract says so): they run where no terminal is.
"""

from __future__ import annotations

from tui.cli.commands import (
    activations,
    attribute,
    collection,
    coverage,
    dictionary,
    diff,
    experts,
    layers,
    lens,
    mcp,
    probe,
    scan,
    tokens,
)
from tui.cli.options import Command

_MODULES = (
    scan,
    layers,
    experts,
    tokens,
    collection,
    activations,
    probe,
    attribute,
    coverage,
    diff,
    lens,
    dictionary,
    mcp,
)
COMMANDS: dict[str, Command] = {module.COMMAND.name: module.COMMAND for module in _MODULES}
COMMANDS[dictionary.FIT_COMMAND.name] = dictionary.FIT_COMMAND  # the group's second command
# A first word that names a family of commands.
GROUPS: dict[str, str] = {"lens": lens.GROUP, "dictionary": dictionary.GROUP}
