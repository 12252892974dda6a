"""(k) The MCP server's start on a warm cache: from launching ``neuron-tui mcp`` to the first
``list_layers`` answer, through the official SDK's stdio client, against the same client starting
a bare SDK server with one tool (the floor: Python, the SDK and the handshake). Goal: under 2 s.

``python -m bench.mcp_start`` runs it alone (it scans one layer of the bundled model first, into a
temporary cache, so that the cache is warm)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from bench.child import ROOT

BARE_SERVER = """
from typing_extensions import TypedDict
from mcp.server.mcpserver import MCPServer
class Layers(TypedDict):
    layers: list
server = MCPServer("bare")
@server.tool()
def list_layers() -> Layers:
    return {"layers": []}
server.run("stdio")
"""


async def _first_answer(args: list[str], env: dict) -> tuple[float, dict]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    started = time.perf_counter()
    async with Client(StdioServerParameters(command=sys.executable, args=args, env=env)) as client:
        result = await client.call_tool("list_layers", {})
        seconds = time.perf_counter() - started
    assert not result.is_error and result.structured_content is not None, result.content
    return seconds, result.structured_content


def bench_mcp_start(runs: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as folder:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NEURON_TUI_CACHE_DIR": str(Path(folder) / "cache"),
            "NEURON_TUI_DATA_DIR": str(Path(folder) / "data"),
        }
        scan = [sys.executable, "-m", "tui.cli", "layers", "--layers", "29", "--device", "cpu"]
        subprocess.run(scan, env=env, check=True, capture_output=True)  # the warm cache
        server = ["-m", "tui.cli", "mcp", "--device", "cpu"]
        bare = ["-c", BARE_SERVER]
        anyio.run(_first_answer, server, env)  # bytecode written, files in the page cache
        anyio.run(_first_answer, bare, env)
        ours = [anyio.run(_first_answer, server, env) for _ in range(runs)]
        floor = [anyio.run(_first_answer, bare, env)[0] for _ in range(runs)]
    seconds = [s for s, _ in ours]
    answer = ours[-1][1]
    return {
        "mcp_start_median_s": statistics.median(seconds),
        "mcp_start_max_s": max(seconds),
        "bare_sdk_median_s": statistics.median(floor),
        "mcp_over_bare": statistics.median(seconds) / statistics.median(floor),
        "model_loaded": answer.get("model_loaded"),
        "layers_scanned": sum(layer["scanned"] for layer in answer["layers"]),
        "runs": runs,
    }


def report_mcp_start(found: dict, out) -> None:
    print(
        f"MCP server, warm cache, launch to the first list_layers answer: median "
        f"{found['mcp_start_median_s']:.2f} s, slowest {found['mcp_start_max_s']:.2f} s of {found['runs']} "
        f"vs a bare SDK server {found['bare_sdk_median_s']:.2f} s -> {found['mcp_over_bare']:.2f}x "
        f"(model loaded: {found['model_loaded']}; layers in the cache: {found['layers_scanned']}; "
        "goal: under 2 s)",
        file=out,
    )


if __name__ == "__main__":
    report_mcp_start(bench_mcp_start(), sys.stdout)
