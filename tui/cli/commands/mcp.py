"""``neuron-tui mcp``: serve the explorer's questions to an agent over the Model Context Protocol."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys

from engine.errors import UserError
from engine.neuron_engine import NeuronEngine
from engine.settings import ScanSettings
from tui.cli.options import CORPUS, LENS, TOP_K, Command, Option, count, positive_int
from tui.cli.progress import say

LOOPBACK = "127.0.0.1"


def port_number(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {port}")
    return port


def check_host(host: str, allow_remote: bool) -> None:
    """Loopback only, unless the user says otherwise: the tools run the model, read the cache and
    write the collection, and the protocol's HTTP transport has no authentication of its own here."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise UserError(f"--host {host!r} is not an address this machine can bind: use 127.0.0.1") from None
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote and not allow_remote:
        raise UserError(
            f"--host {host} is reachable from other machines ({remote[0]}): anyone who can reach it "
            "could run the model and change the collection; keep 127.0.0.1 (and tunnel with ssh -L), "
            "or add --allow-remote"
        )


def check_port(host: str, port: int) -> None:
    """One line now for a port that cannot be bound, rather than a server log line later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as trial:
        trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            trial.bind((host, port))
        except OSError as error:
            raise UserError(
                f"cannot serve on {host} port {port}: {error.strerror or error}; choose another --http PORT"
            ) from None


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/mcp" if ":" in host else f"http://{host}:{port}/mcp"


def client_left(error: BaseException) -> bool:
    """Whether the server stopped because its client went away (its pipes closed mid-answer):
    a normal end for a stdio server, not an internal error."""
    import anyio

    inner = getattr(error, "exceptions", None)
    if inner:
        return all(client_left(each) for each in inner)
    gone = (BrokenPipeError, ConnectionResetError, anyio.BrokenResourceError, anyio.ClosedResourceError)
    return isinstance(error, gone)


def run(args: argparse.Namespace, engine: NeuronEngine, settings: ScanSettings, layers: list[int]) -> int:
    from tui.mcp.questions import Served
    from tui.mcp.server import Server

    if args.http is None and (args.host is not None or args.allow_remote):
        raise UserError("--host and --allow-remote are for --http PORT: the default transport is stdio")
    host = args.host or LOOPBACK
    if args.http is not None:
        check_host(host, args.allow_remote)
        check_port(host, args.http)
    if args.corpus is not None:
        engine.corpus(args.corpus)  # its files checked now, not at an agent's first pass
    server = Server(Served(engine, settings, args.corpus, args.max_tokens), _version())
    if args.http is not None:
        if args.allow_remote:
            say("warning: no authentication: whoever reaches this port can run the model and mark neurons")
        say(f"serving MCP over streamable HTTP at {url(host, args.http)} (Ctrl-C stops)")
        server.run_http(host, args.http)
        return 0
    if sys.stdin.isatty():  # a person, not a client: say what this is waiting for
        say(
            "serving MCP on stdin/stdout: an MCP client starts this command and speaks JSON-RPC "
            "to it (see the README's 'An agent at your side'); Ctrl-C stops"
        )
        signal.signal(signal.SIGINT, _stop_at_once)
    try:
        server.run_stdio()
    except BaseException as error:
        if not client_left(error):
            raise
    return 0


def _stop_at_once(_signal: int, _frame: object) -> None:
    """Ctrl-C at a terminal: the SDK reads stdin in a thread that a KeyboardInterrupt does not stop
    (a second Ctrl-C would be needed), and with no client connected nothing runs that an immediate
    exit could cut short."""
    os.write(2, b"neuron-tui: stopped\n")
    os._exit(130)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("neuron-tui")
    except metadata.PackageNotFoundError:
        return "0"


COMMAND = Command(
    "mcp",
    "Serve the explorer's questions as Model Context Protocol tools, on stdio (for an agent that "
    "starts this command) or with --http PORT over streamable HTTP on 127.0.0.1: list_layers, "
    "layer_neurons, neuron_detail, search_token, probe_text, attribute_text, coverage, "
    "get_collection, mark_neuron, unmark_neuron and export, with the same numbers as the commands, "
    "over the same cache and collection. The model is loaded at the first tool that needs it.",
    (
        Option(
            "http",
            ("--http",),
            None,
            dict(type=port_number, default=None, metavar="PORT", help="serve streamable HTTP on PORT"),
        ),
        Option(
            "host",
            ("--host",),
            None,
            dict(default=None, metavar="ADDRESS", help=f"address for --http (default: {LOOPBACK})"),
        ),
        Option(
            "allow_remote",
            ("--allow-remote",),
            None,
            dict(
                action="store_true",
                help="allow --host to be reachable from other machines (no authentication: "
                "anyone who reaches the port can run the model and mark neurons)",
            ),
        ),
        CORPUS.helped(
            "the corpus of neuron_detail's activation evidence (default: wikipedia-vital); "
            "agents cannot name files"
        ),
        count(
            "max_tokens",
            "--max-tokens",
            None,
            "corpus tokens a pass run for evidence reads (default: the first 50,000 on a CPU, the "
            "whole corpus on a GPU)",
        ),
        TOP_K,
        LENS,
    ),
    run,
    epilog="Register it in an MCP client as a command: neuron-tui mcp (see the README). A client "
    "starts it with few environment variables: give --cache-dir, or NEURON_TUI_CACHE_DIR and "
    "NEURON_TUI_DATA_DIR in the client's env for the server, when you use them.",
)
