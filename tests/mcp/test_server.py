"""The MCP server on a tiny random Llama: the text tools equal their commands, bad input is a tool
error of one line and the server goes on, marks land in the shared collection, identical calls
share one pass, a cancelled call leaves no work behind, and HTTP stays on the loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.mcp_client import answer, mcp_session, read, refusal
from tests.helpers.terminal import Terminal
from tui.cli import main

TEXT = "The cat sat on the mat, and then it ran."


def _jsonl(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "settings"} for line in path.open()]


async def test_text_and_evidence_tools_equal_the_commands(tiny_llama_dir, tmp_path):
    model = ("--model", str(tiny_llama_dir))
    async with mcp_session(*model, "--max-tokens", "2048") as client:
        before = await answer(client, "neuron_detail", layer=1, neuron=3)
        detail = await answer(client, "neuron_detail", layer=1, neuron=3, evidence="run")
        # the probe reads layer 1's scan and corpus scale now, as the command will
        probed = await answer(client, "probe_text", text=TEXT, top=2)
        attributed = await answer(client, "attribute_text", text=TEXT, layers="1", top=3)
    assert before["activations"] is None and detail["evidence"]["read"] == 2048
    out = tmp_path / "e.jsonl"
    assert main(["activations", *model, "--layers", "1", "--max-tokens", "2048", "-o", str(out)]) == 0
    assert _jsonl(out)[3] == detail["activations"]
    assert main(["probe", *model, "--text", TEXT, "--top", "2", "-o", str(tmp_path / "p.jsonl")]) == 0
    rows = _jsonl(tmp_path / "p.jsonl")
    assert [{k: v for k, v in row.items() if k != "model"} for row in rows] == probed["tokens"]
    assert probed["layers"] == [0, 1] and len(rows) > 5
    assert all(unit["promotes"] for row in rows for unit in row["layers"][1]["units"])  # layer 1's scan
    out = tmp_path / "a.jsonl"
    assert main(["attribute", *model, "--text", TEXT, "--layers", "1", "--top", "3", "-o", str(out)]) == 0
    assert _jsonl(out) == attributed["positions"]


async def test_bad_input_is_one_line_and_the_server_goes_on(tiny_llama_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    exports = Path(os.environ["NEURON_TUI_DATA_DIR"]) / "exports"
    exports.mkdir(parents=True)
    (exports / "away").symlink_to(outside)
    async with mcp_session("--model", str(tiny_llama_dir)) as client:
        assert "layers 0-1" in await refusal(client, "layer_neurons", layer=7)
        assert "neurons 0-63" in await refusal(client, "neuron_detail", layer=1, neuron=64)
        assert "no token matches" in await refusal(client, "search_token", text="\u2603\u2603 nowhere")
        assert "unknown field" in await refusal(client, "layer_neurons", layer=0, filter="bogus>1")
        assert "unknown sort" in await refusal(client, "layer_neurons", layer=0, sort="colour")
        assert "text is empty" in await refusal(client, "probe_text", text="  ")
        assert "neurons 0-63" in await refusal(client, "mark_neuron", layer=0, neuron=99)
        heard: list = []
        good = await answer(client, "layer_neurons", heard, layer=0, limit=2)
        assert len(good["records"]) == 2
        messages = [message for _, _, message in heard]  # the scan reported as it went
        assert "scanning layer 0: 0%" in messages and messages[-1] == "layer 0 done", messages
        assert all(total == 1 for _, total, _ in heard[1:]) and heard[-1][0] == 1
        for path in (str(tmp_path / "x.jsonl"), "../x.jsonl", "away/x.jsonl", "x.txt", "~/x.json"):
            await refusal(client, "export", what="layers", path=path)
        assert "lift has no values" in await refusal(client, "layer_neurons", layer=0, sort="lift")
        assert "two checkpoints" in await refusal(client, "layer_neurons", layer=0, filter="diff_cos<0.5")
        assert "finite" in await refusal(client, "layer_neurons", layer=0, filter="null_z>nan")
        for bad in ({"layer": True}, {"layer": "abc"}, {"layer": 0, "limit": 10**6}, {"layer": -1}):
            assert "bad arguments for layer_neurons" in await refusal(client, "layer_neurons", **bad)
        await answer(client, "export", what="layers", path="made.jsonl", layers="0")
        os.mkfifo(exports / "pipe.jsonl")
        for path, words in (
            ("made.jsonl", "overwrite"),
            ("made.jsonl/below.jsonl", "cannot write the export"),
            ("pipe.jsonl", "not a regular file"),
            ("a\x00b.jsonl", "cannot write the export"),
        ):
            assert words in await refusal(client, "export", what="layers", path=path, layers="0")
        await answer(client, "export", what="layers", path="made.jsonl", layers="0", overwrite=True)
    assert list(outside.iterdir()) == [] and not (tmp_path / "x.jsonl").exists()


async def test_a_mark_over_mcp_is_in_the_collection_command(tiny_llama_dir, tmp_path, capsys):
    model = ("--model", str(tiny_llama_dir))
    async with mcp_session(*model) as client:
        marked = await answer(client, "mark_neuron", layer=1, neuron=5, note="fires on cats")
        assert marked["marked"] and marked["collection_size"] == 1
        await answer(client, "mark_neuron", layer=0, neuron=7)
        await answer(client, "unmark_neuron", layer=0, neuron=7)
        held = await answer(client, "get_collection")
    out = tmp_path / "collection.jsonl"
    assert main(["collection", *model, "-o", str(out)]) == 0
    records = _jsonl(out)
    assert [(r["layer"], r["neuron"], r["note"]) for r in records] == [(1, 5, "fires on cats")]
    assert held["records"] == records


@pytest.mark.slow
async def test_a_mark_over_mcp_shows_in_a_running_explorer(tiny_gguf, tmp_path):
    cache, data = tmp_path / "cache", os.environ["NEURON_TUI_DATA_DIR"]
    model = ("--model", str(tiny_gguf), "--device", "cpu", "--cache-dir", str(cache))
    terminal = Terminal(list(model), size=(120, 40), env={"NEURON_TUI_DATA_DIR": data, "TERM": "xterm"})
    try:
        await anyio.to_thread.run_sync(terminal.wait_for_screen, "top tokens by")
        async with mcp_session(*model) as client:
            await answer(client, "mark_neuron", layer=1, neuron=3, note="from an agent")
        await anyio.to_thread.run_sync(terminal.wait_for_screen, "1 marked")
    finally:
        if not terminal.ended():
            terminal.type(b"q")
        assert terminal.wait() == 0


async def test_identical_calls_share_one_pass_and_cancelling_leaves_no_work(tiny_llama_dir):
    """Two calls for one layer's evidence run one pass; it goes on while one call waits and
    stops, leaving no worker, once both are cancelled."""
    call = {"layer": 1, "neuron": 3, "evidence": "run"}
    reading = anyio.Event()

    async def progress(done: float, total: float | None, words: str | None) -> None:
        if words and "reading the corpus" in words and done > 0:
            reading.set()

    async def work(client: Client, expect) -> list[dict]:  # wait for a state of the board
        while not expect(found := json.loads(await read(client, "neuron-tui://work"))):
            await anyio.sleep(0.05)
        return found

    async with mcp_session("--model", str(tiny_llama_dir), "--max-tokens", "100000") as client:
        first, second = anyio.CancelScope(), anyio.CancelScope()

        async def ask(scope: anyio.CancelScope, listener=None) -> None:
            with scope:
                await client.call_tool("neuron_detail", call, progress_callback=listener)
                raise AssertionError("the pass ended before it was cancelled")

        async with anyio.create_task_group() as calls:
            calls.start_soon(ask, first, progress)
            await reading.wait()
            calls.start_soon(ask, second)
            running = await work(client, lambda jobs: jobs and jobs[0]["waiting_calls"] == 2)
            assert len(running) == 1  # joined, not started again
            first.cancel()
            running = await work(client, lambda jobs: jobs and jobs[0]["waiting_calls"] == 1)
            assert not running[0]["stopping"]  # the other call still waits for it
            second.cancel()
        await work(client, lambda jobs: jobs == [])  # the worker thread has returned
        layers = await answer(client, "list_layers")
        assert layers["n_layers"] == 2


def test_http_stays_on_the_loopback(tiny_llama_dir):
    model = ("--model", str(tiny_llama_dir))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        for args, words in (
            (("--http", "8765", "--host", "0.0.0.0"), "--allow-remote"),
            (("--host", "127.0.0.1", "--http", "0"), "must be at least 1"),
            (("--http", "70000"), "1-65535"),
            (("--http", busy), f"port {busy}"),
            (("--host", "localhost"), "--http PORT"),
            (("--host", "127.0.0.1"), "--http PORT"),
        ):
            done = run_cli("mcp", *model, *args)
            assert done.returncode == 2 and words in done.stderr and len(done.stderr.splitlines()) == 1


async def test_http_serves_the_same_tools_and_ctrl_c_stops_its_work(tiny_llama_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--model", str(tiny_llama_dir), "--max-tokens", "100000", "--http", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "mcp", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stderr is not None
        assert "serving MCP" in server.stderr.readline()  # said before it binds
        while True:  # until the port answers
            assert server.poll() is None, server.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except ConnectionRefusedError:
                await anyio.sleep(0.05)
        reading, finished = anyio.Event(), []

        async def progress(done: float, total: float | None, words: str | None) -> None:
            if words and "reading the corpus" in words and done > 0:
                reading.set()

        async def detail(client: Client) -> None:
            call = {"layer": 1, "neuron": 0, "evidence": "run"}
            with contextlib.suppress(Exception):  # the server goes away under it
                result = await client.call_tool("neuron_detail", call, progress_callback=progress)
                finished.append(result)

        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            layers = await answer(client, "list_layers")
            assert layers["n_layers"] == 2
            async with anyio.create_task_group() as calls:
                calls.start_soon(detail, client)
                await reading.wait()
                server.send_signal(signal.SIGINT)  # Ctrl-C: the pass stops at its next batch
                assert await anyio.to_thread.run_sync(server.wait) == 130  # as Ctrl-C ends a command
                calls.cancel_scope.cancel()
        said = server.stderr.read()
        assert "Traceback" not in said and "interrupted" in said, said
        assert not [result for result in finished if not result.is_error]  # it never ran to its end
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_a_dictionarys_features_are_the_units(tiny_llama_dir, tmp_path):
    from tests.helpers.dictionaries import write_sparsify

    folder = tmp_path / "sparsify"
    write_sparsify(folder, "layers.1", d_in=32, num_latents=48)
    units = ("--model", str(tiny_llama_dir), "--dictionary", str(folder))
    async with mcp_session(*units) as client:
        layers = await answer(client, "list_layers")
        assert layers["unit"] == "feature" and [entry["layer"] for entry in layers["layers"]] == [1]
        listed = await answer(client, "layer_neurons", layer=1, limit=3, detail="full")
        assert "features 0-47" in await refusal(client, "mark_neuron", layer=1, neuron=48)
        assert "no dictionary" in await refusal(client, "layer_neurons", layer=0)
        assert "--dictionary" in await refusal(client, "attribute_text", text=TEXT)
        marked = await answer(client, "mark_neuron", layer=1, neuron=47)
    assert marked["feature"] == 47 and listed["unit"] == "feature" and listed["units"] == 48
    assert main(["scan", *units, "--layers", "1", "-o", str(tmp_path / "f.jsonl")]) == 0
    features = {record["feature"]: record for record in _jsonl(tmp_path / "f.jsonl")}
    assert all(record == features[record["feature"]] for record in listed["records"])


def _server(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tui.cli", "mcp", *args]
    return subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _send(server: subprocess.Popen, message: dict) -> None:
    assert server.stdin is not None
    server.stdin.write((json.dumps(message) + "\n").encode())
    server.stdin.flush()


def test_a_client_that_vanishes_mid_pass_ends_the_server_quietly(tiny_llama_dir):
    """Its pipes closed while a pass reports progress: exit 0, no internal error, no process left."""
    server = _server("--model", str(tiny_llama_dir), "--max-tokens", "100000")
    assert server.stdout is not None and server.stderr is not None
    try:
        hello = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        }
        _send(server, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello})
        assert json.loads(server.stdout.readline())["id"] == 0
        _send(server, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"name": "neuron_detail", "arguments": {"layer": 1, "neuron": 0, "evidence": "run"}}
        _send(
            server,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {**call, "_meta": {"progressToken": 1}},
            },
        )
        while "reading the corpus" not in server.stdout.readline().decode():
            pass  # until the pass reports its first batches
        server.stdout.close()
        server.stdin.close()  # type: ignore[union-attr]
        assert server.wait() == 0
        assert "internal error" not in server.stderr.read().decode()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
