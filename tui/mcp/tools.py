"""The MCP tools: each a thin async shell over ``tui.mcp.questions``, with typed arguments whose
schema says their ranges, and an answer whose schema is ``tui.mcp.schemas``'. Quick answers run in
a worker thread; scans, passes and model runs go through the board (progress, cancellation, one run
for the same work)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field, Strict

from engine.columns import SORT_ORDER
from tui.mcp import questions as q
from tui.mcp.exports import export_collection, export_layers, export_path
from tui.mcp.runtime import Runtime, compact
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

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
MOST = 1000  # records, tokens or neurons in one answer: more is a file (export), not a message


# Whole numbers are JSON numbers only (Strict: true is not 1), in the range each schema states.
Layer = Annotated[int, Strict(), Field(ge=0, description="layer index, from 0")]
Unit = Annotated[
    int, Strict(), Field(ge=0, description="neuron index within the layer (a feature's, with --dictionary)")
]
Limit = Annotated[int, Strict(), Field(ge=1, le=MOST, description="records returned")]
Offset = Annotated[int, Strict(), Field(ge=0, description="records skipped first")]
Show = Annotated[int, Strict(), Field(ge=1, le=MOST, description="best- and least-covered tokens listed")]
TokenTop = Annotated[int, Strict(), Field(ge=1, le=MOST, description="neurons per matching token")]
ProbeTop = Annotated[int, Strict(), Field(ge=1, le=50, description="neurons per token and layer")]
AttributionTop = Annotated[int, Strict(), Field(ge=1, le=100, description="neurons per position, each way")]
Layers = Annotated[
    str, Field(description="layers: one (13), a range (0-5), a list (0,3,7) or all", max_length=200)
]
Text = Annotated[str, Field(description="the text, as the model's tokenizer reads it", max_length=100_000)]
SORT = (
    f"the column to sort by, largest first (neuron: by index; forms: fewest first, one word being "
    f"the most token-like; class: prediction, suppression, none): "
    f"{', '.join(SORT_ORDER)}; lift and the other corpus columns need the layer's corpus pass"
)
FILTER = (
    "conditions joined by commas, each a column, an operator (> >= < <= =) and a value, e.g. "
    "'null_z>3, class=prediction'; a bare number n means max_dot>=n; empty: every neuron"
)


def tool(server: MCPServer, annotations: ToolAnnotations) -> Callable:
    """``server.tool`` with the docstring as the description, without its indentation."""

    def register(function: Callable) -> Callable:
        description = inspect.cleandoc(function.__doc__ or "")
        return server.tool(annotations=annotations, description=description)(function)

    return register


def add_tools(server: MCPServer, runtime: Runtime) -> None:
    _layer_tools(server, runtime)
    _text_tools(server, runtime)
    _collection_tools(server, runtime)


def _layer_tools(server: MCPServer, runtime: Runtime) -> None:
    served = runtime.served

    @tool(server, READ)
    async def list_layers() -> LayersAnswer:
        """Every layer: its number of units, whether its scan is cached, and for a cached one its
        summary row (max-dot quantiles, kurtosis, standout and one-token counts), as `neuron-tui
        layers` gives it. Read from the cache alone: it never loads the model."""
        return compact(await runtime.answer(lambda: q.list_layers(served)))

    @tool(server, READ)
    async def layer_neurons(
        ctx: Context,
        layer: Layer,
        sort: Annotated[str, Field(description=SORT)] = "max_dot",
        filter: Annotated[str, Field(description=FILTER, max_length=500)] = "",
        limit: Limit = 20,
        offset: Offset = 0,
        detail: Annotated[
            Literal["summary", "full"],
            Field(description="summary: 5 tokens a list, no input side; full: the scan records whole"),
        ] = "summary",
    ) -> LayerNeuronsAnswer:
        """A layer's neurons, sorted and filtered, as `neuron-tui scan` records (with the corpus
        columns such as lift filled in when the layer's corpus pass is cached). Scans the layer
        first when it is not cached (progress is reported)."""
        full = detail == "full"
        await runtime.answer(lambda: q.listing(served, layer, sort, filter))  # before any scan
        (neurons,) = await runtime.scanned(ctx, [layer], inputs=full)
        page = (limit, offset, full)
        return compact(await runtime.answer(lambda: q.layer_neurons(served, neurons, sort, filter, *page)))

    @tool(server, READ)
    async def neuron_detail(
        ctx: Context,
        layer: Layer,
        neuron: Unit,
        evidence: Annotated[
            Literal["cached", "run", "none"],
            Field(
                description="activation evidence: cached (when the cache has it), run (a corpus "
                "pass of the layer first when it has not: minutes on a CPU), none"
            ),
        ] = "cached",
    ) -> NeuronDetailAnswer:
        """One neuron: its `neuron-tui scan` record (max_dot, top/promote/suppress tokens, null
        z, input side), its `neuron-tui activations` record when the layer's corpus pass is cached
        (top examples, density, lift), and its mark and note in the collection."""
        await runtime.answer(lambda: q.check_unit(served, layer, neuron))
        (neurons,) = await runtime.scanned(ctx, [layer], inputs=True)
        found = None
        if evidence != "none":
            found = await runtime.answer(lambda: q.cached_evidence(served, layer))
        if found is None and evidence == "run":

            def work(report: q.Report, cancelled: q.Cancelled) -> q.EvidenceFound:
                return q.run_pass(served, layer, report, cancelled)

            found = await runtime.long(ctx, ("pass", layer), f"corpus pass of layer {layer}", work)
        return compact(await runtime.answer(lambda: q.neuron_detail(served, neurons, neuron, found)))

    @tool(server, READ)
    async def coverage(ctx: Context, layers: Layers = "all", show: Show = 15) -> CoverageAnswer:
        """Does every token have a neuron aimed at it? The covered share per layer and overall, and
        the best- and least-covered tokens, as `neuron-tui coverage -o F.json` writes them."""
        neurons = await runtime.scanned(ctx, await runtime.layers(layers))
        return compact(await runtime.answer(lambda: q.coverage(served, neurons, show)))


def _text_tools(server: MCPServer, runtime: Runtime) -> None:
    served = runtime.served

    @tool(server, READ)
    async def search_token(
        text: Annotated[
            str, Field(description="token text, e.g. ' Paris' (a leading space matters)", max_length=200)
        ],
        layers: Layers = "all",
        top: TokenTop = 10,
        exact_only: Annotated[
            bool, Field(description="only the token whose text is exactly this, not its variants")
        ] = False,
    ) -> SearchAnswer:
        """The neurons aimed hardest at a token (the exact string, then variants with or without a
        leading space and other casings), exact in float64 from the weights, as `neuron-tui
        tokens` gives them."""
        return compact(await runtime.answer(lambda: q.search_token(served, text, layers, top, exact_only)))

    @tool(server, READ)
    async def probe_text(ctx: Context, text: Text, layers: Layers = "all", top: ProbeTop = 3) -> ProbeAnswer:
        """Run the model on a text (at most its context length): per token, each layer's neurons
        that fire hardest for themselves, with the tokens their weights promote and suppress most,
        as `neuron-tui probe` writes them. The first call loads the model; the forward pass, once
        started, runs to its end."""

        def work(report: q.Report, cancelled: q.Cancelled) -> dict:
            return q.probe_text(served, text, layers, top, report)

        return compact(await runtime.long(ctx, ("probe_text", text, layers, top), "probe", work))

    @tool(server, READ)
    async def attribute_text(
        ctx: Context,
        text: Text,
        layers: Layers = "all",
        top: AttributionTop = 10,
        target: Annotated[
            str | None,
            Field(description="one token whose logit to attribute at every position", max_length=200),
        ] = None,
    ) -> AttributionAnswer:
        """Which neurons made the token at each position of a text: the direct logit attribution
        through the fixed final norm, as `neuron-tui attribute` writes it."""

        def work(report: q.Report, cancelled: q.Cancelled) -> dict:
            return q.attribute_text(served, text, layers, top, target, report, cancelled)

        key = ("attribute_text", text, layers, top, target)
        return compact(await runtime.long(ctx, key, "attribution", work))


def _collection_tools(server: MCPServer, runtime: Runtime) -> None:
    served = runtime.served

    @tool(server, READ)
    async def get_collection(ctx: Context) -> CollectionAnswer:
        """The marked neurons with their notes, as `neuron-tui collection` exports them: the same
        file the explorer reads, so marks made here show there and the other way round."""

        def work(report: q.Report, cancelled: q.Cancelled) -> dict:
            return q.get_collection(served, report, cancelled)

        return compact(await runtime.long(ctx, ("get_collection",), "the collection", work))

    @tool(server, WRITE)
    async def mark_neuron(
        layer: Layer,
        neuron: Unit,
        note: Annotated[
            str | None,
            Field(description="a short note; an empty one clears it; none keeps it", max_length=500),
        ] = None,
    ) -> MarkAnswer:
        """Mark a neuron in the collection, with a note when given."""
        return compact(await runtime.answer(lambda: q.mark(served, layer, neuron, note, marked=True)))

    @tool(server, WRITE)
    async def unmark_neuron(layer: Layer, neuron: Unit) -> MarkAnswer:
        """Unmark a neuron; its note is kept for when it is marked again."""
        return compact(await runtime.answer(lambda: q.mark(served, layer, neuron, None, marked=False)))

    @tool(server, WRITE)
    async def export(
        ctx: Context,
        what: Annotated[
            Literal["scan", "layers", "coverage", "collection"],
            Field(description="scan (records), layers (rows), coverage, or the collection"),
        ],
        path: Annotated[
            str,
            Field(
                description="a new file's relative name (.jsonl, .json or .csv) under the data "
                "directory's exports/ folder, e.g. layer29.jsonl",
                max_length=200,
            ),
        ],
        layers: Layers = "all",
        overwrite: Annotated[bool, Field(description="replace the file if it exists")] = False,
    ) -> ExportAnswer:
        """Write scan records, layer rows, coverage or the collection to a file under the data
        directory's exports/ folder, as the matching command's --output writes it; the full path
        comes back."""
        target = await runtime.answer(lambda: export_path(path, overwrite))  # refused before any work
        if what == "collection":

            def work(report: q.Report, cancelled: q.Cancelled) -> dict:
                return export_collection(served, target, report)

            return compact(await runtime.long(ctx, ("export", what, path), "export of the collection", work))
        neurons = await runtime.scanned(ctx, await runtime.layers(layers), inputs=what == "scan")
        return compact(await runtime.answer(lambda: export_layers(served, what, target, neurons)))
