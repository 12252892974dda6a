"""What the MCP tools share while the server runs: the engine, the board of long work, and the
ways an answer or a failure goes back to the agent (compact JSON; one line for any error)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from engine.data.neurons import LayerNeurons
from engine.errors import UserError, describe
from tui.answers import chosen_layers
from tui.mcp import questions as q
from tui.mcp.board import Work, WorkBoard

log = logging.getLogger(__name__)


def one_line(error: ValidationError) -> str:
    """Pydantic's report of bad arguments, one line: each field and what it should be."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "arguments"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


class NeuronServer(MCPServer):
    """The SDK's server, with argument errors said in one line (the SDK gives pydantic's several
    lines and a link)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if isinstance(error.__cause__, ValidationError):
                raise ToolError(f"bad arguments for {name}: {one_line(error.__cause__)}") from None
            raise


def compact(answer: dict) -> Any:
    """The answer as the tool's structured content, with its text form as compact JSON (the SDK
    would indent it: twice the bytes for an agent to read)."""
    text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=answer)


@dataclass
class Runtime:
    served: q.Served
    board: WorkBoard | None = None

    def _failed(self, error: Exception) -> ToolError:
        """Bad input as its one line; anything else by type and first line (the traceback goes to
        the server's log on stderr)."""
        if isinstance(error, UserError):
            return ToolError(str(error))
        log.error("a tool failed", exc_info=error)
        return ToolError(f"internal error: {describe(error)} (the server's stderr has the traceback)")

    async def answer(self, work: Callable[[], Any]) -> Any:
        """Quick work in a worker thread (cache reads)."""
        try:
            return await anyio.to_thread.run_sync(work)
        except Exception as error:
            raise self._failed(error) from None

    async def long(
        self,
        ctx: Context,
        key: Hashable,
        title: str,
        work: Work,
        share: tuple[int, int] = (0, 1),
    ) -> Any:
        """Long work on the board: joined when the same work runs, progress to this call (as the
        ``share`` (index, of) of a larger count, when it is one step of several)."""
        index, of = share

        async def listener(done: float, total: float | None, words: str) -> None:
            if of > 1:
                done, total = index + (done / total if total else 0.0), of
            try:
                await ctx.report_progress(done, total, words)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError):
                pass  # the client has gone: the work stops when its call is cancelled

        assert self.board is not None, "the board is set up when the server starts"
        try:
            return await self.board.run(key, title, work, listener)
        except Exception as error:
            raise self._failed(error) from None

    async def scanned(self, ctx: Context, layers: list[int], inputs: bool = False) -> list[LayerNeurons]:
        """The layers' scans (with the neurons' input side when ``inputs``), derived, one layer
        at a time: each layer is one piece of work, joined by any tool that needs it."""
        served, found = self.served, []
        for index, layer in enumerate(layers):

            def work(report: q.Report, cancelled: q.Cancelled, layer: int = layer) -> LayerNeurons:
                return q.derived(served, [layer], report, cancelled, inputs)[0]

            title = f"scan of layer {layer}"
            found.append(await self.long(ctx, ("scan", layer, inputs), title, work, (index, len(layers))))
        return found

    async def layers(self, spec: str) -> list[int]:
        return await self.answer(lambda: chosen_layers(self.served.engine, self.served.settings, spec))
