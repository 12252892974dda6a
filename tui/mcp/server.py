"""``neuron-tui mcp``: the explorer's questions as Model Context Protocol tools, on the official
SDK's server (``mcp.server.mcpserver.MCPServer``) over stdio or streamable HTTP.

The tools (tui.mcp.tools) are thin async shells: answers are computed in worker threads by
``tui.mcp.questions`` (the same rows the commands write), long work goes through the ``WorkBoard``
(progress notifications, cancellation, one run for the same work), and any failure comes back as a
tool error of one line while the server goes on serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from tui.mcp import questions as q
from tui.mcp.board import WorkBoard
from tui.mcp.resources import add_resources
from tui.mcp.runtime import NeuronServer, Runtime
from tui.mcp.tools import add_tools

INSTRUCTIONS = (
    "Vocabulary-aligned neurons of one language model: each MLP neuron's output weights projected "
    "onto the unembedding (dots = W_out[i] @ W_U). max_dot is max |dots|; top tokens are those with "
    "the largest |dots|, sign kept; null_z compares a neuron with random directions (z > 3 stands "
    "out). Start with list_layers; layer_neurons lists a layer sorted and filtered; neuron_detail "
    "gives one neuron's record; search_token finds the neurons aimed at a token; probe_text and "
    "attribute_text run the model on a text. Scans and corpus passes take seconds to minutes and "
    "report progress; results are cached, so a second ask is quick."
)


class Server:
    """The MCP server over one engine: the SDK's server with the tools and resources, and the
    runtime they share (its board of long work exists while the server runs)."""

    def __init__(self, served: q.Served, version: str):
        self.runtime = Runtime(served)
        self.mcp = NeuronServer(
            "neuron-tui",
            title="neuron-tui",
            instructions=INSTRUCTIONS,
            version=version,
            lifespan=self._lifespan,
            log_level="WARNING",
        )
        add_tools(self.mcp, self.runtime)
        add_resources(self.mcp, served, self.running)

    def running(self) -> list[dict]:
        return self.runtime.board.running() if self.runtime.board else []

    def stop_work(self) -> None:
        """Tell running work to stop at its next check (the server is closing)."""
        if self.runtime.board is not None:
            self.runtime.board.stop_all()

    @asynccontextmanager
    async def _lifespan(self, _server: Any) -> AsyncIterator[Runtime]:
        async with anyio.create_task_group() as tasks:
            self.runtime.board = WorkBoard(tasks)
            try:
                yield self.runtime
            finally:
                self.stop_work()  # the task group then waits for their threads to return

    def run_stdio(self) -> None:
        self.mcp.run("stdio")

    def run_http(self, host: str, port: int) -> None:
        """Streamable HTTP at http://HOST:PORT/mcp. Ctrl-C (or SIGTERM) first tells running work
        to stop: uvicorn's graceful shutdown waits for the calls in flight, which wait for it."""
        import uvicorn

        stop_work = self.stop_work

        class Uvicorn(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                stop_work()
                super().handle_exit(sig, frame)

        app = self.mcp.streamable_http_app(host=host)
        Uvicorn(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
