"""The MCP server's resources: the README's findings, the model card, and the work running now."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mcp.server.mcpserver import MCPServer

from tui.mcp.questions import Served

FINDINGS_HEADING = "## One finding"


def readme() -> str:
    """The README: a source checkout's own, else the one installed with the package (its long
    description)."""
    from importlib import metadata

    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "README.md").is_file():
        return (checkout / "README.md").read_text(encoding="utf-8")
    try:
        return metadata.metadata("neuron-tui").get_payload() or ""  # type: ignore[attr-defined]
    except metadata.PackageNotFoundError:
        return ""


def findings(text: str) -> str:
    """The README's findings section, from its heading to the next heading of the same level."""
    start = text.find(f"\n{FINDINGS_HEADING}")
    if start < 0:
        return "The README of this installation has no findings section."
    end = text.find("\n## ", start + len(FINDINGS_HEADING) + 1)
    return text[start + 1 : end if end >= 0 else len(text)].strip() + "\n"


def model_card(served: Served) -> dict:
    """What the server reads: the model, its shapes, the settings, the cache and data folders."""
    engine, settings = served.engine, served.settings
    info = engine.info
    dictionaries = engine.dictionary_infos(settings.units)
    return {
        "model": info.name,
        "fingerprint": engine.fingerprint,
        "architecture": info.architecture,
        "n_layers": info.n_layers,
        "d_model": info.d_model,
        "d_mlp": info.d_mlp,
        "d_vocab": info.d_vocab,
        "experts_per_token": info.experts_per_token,
        "layers_with_experts": [layer for layer in range(info.n_layers) if info.experts(layer)],
        "settings": engine.export_metadata(settings),
        "dictionaries": {layer: d.label for layer, d in dictionaries.items()},
        "cache": None if engine.cache_directory is None else str(engine.cache_directory),
        "data": str(engine.data_directory()),
        "model_loaded": engine.source_loaded,
    }


def add_resources(server: MCPServer, served: Served, running: Callable[[], list[dict]]) -> None:
    @server.resource("neuron-tui://findings", mime_type="text/markdown")
    def findings_resource() -> str:
        """What this project found so far about vocabulary-aligned neurons (the README's findings)."""
        return findings(readme())

    @server.resource("neuron-tui://model", mime_type="application/json")
    def model_resource() -> str:
        """The model card: the model's shapes, the scan settings, where the cache and data are."""
        return json.dumps(model_card(served), indent=1)

    @server.resource("neuron-tui://work", mime_type="application/json")
    def work_resource() -> str:
        """The work running now (scans, corpus passes), with its progress."""
        return json.dumps(running(), indent=1)
