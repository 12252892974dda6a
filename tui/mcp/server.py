"""``neuron-tui mcp``: the explorer's questions as Model Context Protocol tools, on the official
SDK's server (``mcp.server.mcpserver.MCPServer``) over stdio or streamable HTTP.

Each tool is a thin async shell: the answer is computed in a worker thread by ``tui.mcp.questions``
(the same rows the commands write), long work goes through the ``WorkBoard`` (progress
notifications, cancellation, one run for identical calls), and a ``UserError`` comes back as a
tool error of one line while the server goes on serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from engine.data.neurons import LayerNeurons
from engine.errors import UserError
from tui.answers import chosen_layers
from tui.mcp import questions as q
from tui.mcp.board import Work, WorkBoard
from tui.mcp.exports import export_collection, export_layers, export_path
from tui.mcp.resources import add_resources
from tui.mcp.schemas import (
    AttributionAnswer,
    CollectionAnswer,
    CoverageAnswer,
    ExportAnswer,
    LayerNeuronsAnswer,
    LayersAnswer,
    MarkAnswer,
    NeuronDetailAnswer,
    ProbeAnswer,
    SearchAnswer,
)

INSTRUCTIONS = (
    "Vocabulary-aligned neurons of one language model: each MLP neuron's output weights projected "
    "onto the unembedding (dots = W_out[i] @ W_U). max_dot is max |dots|; top tokens are those with "
    "the largest |dots|, sign kept; null_z compares a neuron with random directions (z > 3 stands "
    "out). Start with list_layers; layer_neurons lists a layer sorted and filtered; neuron_detail "
    "gives one neuron's record; search_token finds the neurons aimed at a token; probe_text and "
    "attribute_text run the model on a text. Scans and corpus passes take seconds to minutes and "
    "report progress; results are cached."
)
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

Layer = Annotated[int, Field(description="layer index, from 0")]
Unit = Annotated[int, Field(description="neuron index within the layer (a feature's, with --dictionary)")]
Layers = Annotated[str, Field(description="layers: 13, 0-5, 0,3,7 or all")]
Sort = Annotated[str, Field(description="a column: max_dot, null_z, kurtosis, skew, class, neuron...")]
Filter = Annotated[str, Field(description="conditions, e.g. 'null_z>3, class=prediction', or '0.5'")]
Detail = Annotated[Literal["summary", "full"], Field(description="full: the scan records whole")]
WHAT = "scan (records), layers (rows), coverage or collection"
EXPORT_PATH = "a relative file name (.jsonl, .json or .csv) under the data directory's exports/"


def at_least_one(**counts: int) -> None:
    """A count below 1 as a tool error (the schema says integer; the range is said here, in one line)."""
    for name, value in counts.items():
        if value < 1:
            raise ToolError(f"{name} must be at least 1, got {value}")


@dataclass
class Runtime:
    """What the tools share while the server runs: the engine and the board of running work."""

    served: q.Served
    board: WorkBoard | None = None

    async def answer(self, work: Callable[[], Any]) -> Any:
        """Quick work in a worker thread (cache reads), bad input as a tool error."""
        try:
            return await anyio.to_thread.run_sync(work)
        except UserError as error:
            raise ToolError(str(error)) from None

    async def long(self, ctx: Context, key: Hashable, title: str, work: Work) -> Any:
        """Long work on the board: joined when identical work runs, progress to this call."""

        async def listener(done: float, total: float | None, words: str) -> None:
            await ctx.report_progress(done, total, words)

        assert self.board is not None, "the board is set up when the server starts"
        try:
            return await self.board.run(key, title, work, listener)
        except UserError as error:
            raise ToolError(str(error)) from None

    async def scanned(self, ctx: Context, layers: list[int], inputs: bool = False) -> list[LayerNeurons]:
        """The layers' scans (with the neurons' input side when ``inputs``), derived: one piece of
        work per set of layers, whichever tool asked first."""
        served = self.served

        def work(report: q.Report, cancelled: q.Cancelled) -> list[LayerNeurons]:
            return q.derived(served, layers, report, cancelled, inputs)

        title = f"scan of layer {layers[0]}" if len(layers) == 1 else f"scan of {len(layers)} layers"
        return await self.long(ctx, ("scan", tuple(layers), inputs), title, work)

    async def layers(self, spec: str) -> list[int]:
        return await self.answer(lambda: chosen_layers(self.served.engine, self.served.settings, spec))


def build_server(served: q.Served, version: str) -> MCPServer:
    runtime = Runtime(served)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[Runtime]:
        async with anyio.create_task_group() as tasks:
            runtime.board = WorkBoard(tasks)
            try:
                yield runtime
            finally:
                runtime.board.stop_all()  # their threads return at their next check

    server = MCPServer(
        "neuron-tui",
        title="neuron-tui",
        instructions=INSTRUCTIONS,
        version=version,
        lifespan=lifespan,
        log_level="WARNING",
    )
    _add_layer_tools(server, runtime)
    _add_text_tools(server, runtime)
    _add_collection_tools(server, runtime)
    add_resources(server, served, lambda: runtime.board.running() if runtime.board else [])
    return server


def _add_layer_tools(server: MCPServer, runtime: Runtime) -> None:
    served = runtime.served

    @server.tool(annotations=READ)
    async def list_layers() -> LayersAnswer:
        """Every layer: its number of units, whether its scan is cached, and for a cached one its
        summary (max-dot quantiles, kurtosis, standout and one-token counts). Read from the cache
        alone: it never loads the model."""
        return await runtime.answer(lambda: q.list_layers(served))

    @server.tool(annotations=READ)
    async def layer_neurons(
        ctx: Context,
        layer: Layer,
        sort: Sort = "max_dot",
        filter: Filter = "",
        limit: Annotated[int, Field(description="records returned")] = 20,
        offset: Annotated[int, Field(description="records skipped first")] = 0,
        detail: Detail = "summary",
    ) -> LayerNeuronsAnswer:
        """A layer's neurons sorted and filtered over the column registry, as `neuron-tui scan`
        records (summary: 5 tokens per list, no input side). Scans the layer when it is not
        cached (progress is reported)."""
        at_least_one(limit=limit)
        if offset < 0:
            raise ToolError(f"offset must be 0 or more, got {offset}")
        full = detail == "full"
        await runtime.answer(lambda: q.listing(served, layer, sort, filter))  # before any scan
        (neurons,) = await runtime.scanned(ctx, [layer], inputs=full)
        return await runtime.answer(
            lambda: q.layer_neurons(served, neurons, sort, filter, limit, offset, full)
        )

    @server.tool(annotations=READ)
    async def neuron_detail(
        ctx: Context,
        layer: Layer,
        neuron: Unit,
        evidence: Annotated[
            Literal["cached", "run", "none"],
            Field(description="activation evidence: cached (if any), run (a corpus pass when missing), none"),
        ] = "cached",
    ) -> NeuronDetailAnswer:
        """One neuron: its `neuron-tui scan` record (max_dot, top/promote/suppress tokens, null z,
        input side), its `neuron-tui activations` record when a corpus pass is cached (top
        examples, density, lift), and its mark and note in the collection."""
        await runtime.answer(lambda: q.check_unit(served, layer, neuron))
        (neurons,) = await runtime.scanned(ctx, [layer], inputs=True)
        found = None
        if evidence != "none":
            found = await runtime.answer(lambda: q.cached_evidence(served, layer))
        if found is None and evidence == "run":

            def work(report: q.Report, cancelled: q.Cancelled) -> q.EvidenceFound:
                return q.run_pass(served, layer, report, cancelled)

            found = await runtime.long(ctx, ("pass", layer), f"corpus pass of layer {layer}", work)
        return await runtime.answer(lambda: q.neuron_detail(served, neurons, neuron, found))

    @server.tool(annotations=READ)
    async def coverage(
        ctx: Context,
        layers: Layers = "all",
        show: Annotated[int, Field(description="best- and least-covered tokens listed")] = 15,
    ) -> CoverageAnswer:
        """Does every token have a neuron aimed at it? The covered share per layer and overall, and
        the best- and least-covered tokens (as `neuron-tui coverage -o F.json`)."""
        at_least_one(show=show)

        neurons = await runtime.scanned(ctx, await runtime.layers(layers))
        return await runtime.answer(lambda: q.coverage(served, neurons, show))


def _add_text_tools(server: MCPServer, runtime: Runtime) -> None:
    served = runtime.served

    @server.tool(annotations=READ)
    async def search_token(
        text: Annotated[str, Field(description="token text, e.g. ' Paris' (a leading space matters)")],
        layers: Layers = "all",
        top: Annotated[int, Field(description="neurons per matching token")] = 10,
        exact_only: bool = False,
    ) -> SearchAnswer:
        """The neurons aimed hardest at a token (the exact string, then variants with or without a
        leading space and other casings), exact in float64 from the weights: `neuron-tui tokens`."""
        at_least_one(top=top)
        return await runtime.answer(lambda: q.search_token(served, text, layers, top, exact_only))

    @server.tool(annotations=READ)
    async def probe_text(
        ctx: Context,
        text: str,
        layers: Layers = "all",
        top: Annotated[int, Field(description="neurons per token and layer")] = 3,
    ) -> ProbeAnswer:
        """Run the model on a text: per token, each layer's neurons that fire hardest for
        themselves, with what their weights promote and suppress (`neuron-tui probe`). The first
        call loads the model."""
        at_least_one(top=top)

        def work(report: q.Report, cancelled: q.Cancelled) -> dict:
            return q.probe_text(served, text, layers, top, report)

        return await runtime.long(ctx, ("probe_text", text, layers, top), "probe", work)

    @server.tool(annotations=READ)
    async def attribute_text(
        ctx: Context,
        text: str,
        layers: Layers = "all",
        top: Annotated[int, Field(description="neurons listed per position, each way")] = 10,
        target: Annotated[str | None, Field(description="one token whose logit to attribute")] = None,
    ) -> AttributionAnswer:
        """Which neurons made the token at each position of a text: direct logit attribution
        through the fixed final norm (`neuron-tui attribute`)."""
        at_least_one(top=top)

        def work(report: q.Report, cancelled: q.Cancelled) -> dict:
            return q.attribute_text(served, text, layers, top, target, report, cancelled)

        key = ("attribute_text", text, layers, top, target)
        return await runtime.long(ctx, key, "attribution", work)


def _add_collection_tools(server: MCPServer, runtime: Runtime) -> None:
    served = runtime.served

    @server.tool(annotations=READ)
    async def get_collection(ctx: Context) -> CollectionAnswer:
        """The marked neurons with their notes, as `neuron-tui collection` exports them: the same
        file the explorer reads, so marks made here show there and the other way round."""

        def work(report: q.Report, cancelled: q.Cancelled) -> dict:
            return q.get_collection(served, report, cancelled)

        return await runtime.long(ctx, ("get_collection",), "the collection", work)

    @server.tool(annotations=WRITE)
    async def mark_neuron(
        layer: Layer,
        neuron: Unit,
        note: Annotated[str | None, Field(description="a short note (500 characters at most)")] = None,
    ) -> MarkAnswer:
        """Mark a neuron in the collection, with a note when given (an empty note clears it)."""
        return await runtime.answer(lambda: q.mark(served, layer, neuron, note, marked=True))

    @server.tool(annotations=WRITE)
    async def unmark_neuron(layer: Layer, neuron: Unit) -> MarkAnswer:
        """Unmark a neuron; its note is kept for when it is marked again."""
        return await runtime.answer(lambda: q.mark(served, layer, neuron, None, marked=False))

    @server.tool(annotations=WRITE)
    async def export(
        ctx: Context,
        what: Annotated[Literal["scan", "layers", "coverage", "collection"], Field(description=WHAT)],
        path: Annotated[str, Field(description=EXPORT_PATH)],
        layers: Layers = "all",
    ) -> ExportAnswer:
        """Write scan records, layer rows, coverage or the collection to a file under the data
        directory's exports/ folder, as the matching command writes it; the full path comes back."""
        target = await runtime.answer(lambda: export_path(path))  # refused before any work
        if what == "collection":

            def work(report: q.Report, cancelled: q.Cancelled) -> dict:
                return export_collection(served, target, report)

            return await runtime.long(ctx, ("export", what, path), "export of the collection", work)
        neurons = await runtime.scanned(ctx, await runtime.layers(layers), inputs=what == "scan")
        return await runtime.answer(lambda: export_layers(served, what, target, neurons))
