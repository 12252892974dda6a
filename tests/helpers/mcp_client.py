"""The MCP server as an agent meets it: ``neuron-tui mcp`` started by the official SDK's stdio
client (mcp.client.stdio), in a subprocess with this test's environment."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers.cli import ROOT


@asynccontextmanager
async def mcp_session(*args: str) -> AsyncIterator[Client]:
    """A client connected to ``neuron-tui mcp ARGS`` (the test's cache and data directories)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "tui.cli", "mcp", *args], env=env)
    async with Client(params) as client:
        yield client


async def answer(client: Client, tool: str, heard: list | None = None, **arguments) -> dict:
    """The tool's structured answer; the test fails with the tool's own words if it is an error.
    ``heard`` collects the progress notifications of the call, (done, total, message) each."""

    async def progress(done: float, total: float | None, message: str | None) -> None:
        assert heard is not None
        heard.append((done, total, message))

    result = await client.call_tool(tool, arguments, progress_callback=None if heard is None else progress)
    assert not result.is_error, result.content[0].text
    assert result.structured_content is not None
    return result.structured_content


async def refusal(client: Client, tool: str, **arguments) -> str:
    """The one line of a tool error."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} {arguments} was accepted"
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text, text
    return text


async def read(client: Client, uri: str) -> str:
    found = await client.read_resource(uri)
    return found.contents[0].text
