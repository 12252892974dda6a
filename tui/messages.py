"""Messages of the explorer: results that worker threads send (they arrive as data, never as widget
calls), and what a pane or a view tells the screen or the app above it.

Each is a dataclass (Textual's ``Message`` initialises itself in ``__post_init__``); ``generation``
is the explorer state's generation when the work started, so results of older settings are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import Worker, WorkerState

from engine.data.diff import LayerDiff
from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.model import ModelInfo
from engine.data.null import NullBaseline
from engine.data.results import LayerResult
from engine.data.summary import LayerSummary
from engine.data.tokens import Vocabulary
from tui.state import TokenTable


@dataclass(eq=False)  # identity, as a message is one event
class EngineReady(Message):
    info: ModelInfo
    vocab: Vocabulary


@dataclass(eq=False)  # identity, as a message is one event
class LayerReady(Message):
    """A layer's full results, for the layer the user is looking at."""

    result: LayerResult
    generation: int


@dataclass(eq=False)  # identity, as a message is one event
class LayerSummarised(Message):
    """A layer finished (or was read from the cache) in the background scan: its summary and the
    per-token arrays that token search and coverage use (the full result stays on disk)."""

    summary: LayerSummary
    generation: int
    token_table: TokenTable
    unit_best: TokenTable


@dataclass(eq=False)  # identity, as a message is one event
class EvidenceReady(Message):
    """A layer's activation evidence from the cache or a corpus pass; None: the cache has none."""

    layer: int
    evidence: LayerActivations | None
    generation: int
    reading: EvidenceReading | None = None  # how much of the corpus it read


@dataclass(eq=False)  # identity, as a message is one event
class DiffReady(Message):
    """A layer against the other checkpoint (--against), and that model's results of the layer."""

    diff: LayerDiff
    other: LayerResult
    generation: int


@dataclass(eq=False)  # identity, as a message is one event
class NullReady(Message):
    null: NullBaseline
    generation: int


@dataclass(eq=False)  # identity, as a message is one event
class ScanFinished(Message):
    """The background scan has every layer and the null baseline of this generation."""

    generation: int


@dataclass(eq=False)  # identity, as a message is one event
class Activity(Message):
    """What the background is doing; a newer one replaces a queued older one."""

    text: str
    fraction: float | None
    layer: int | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Activity)


@dataclass(eq=False)  # identity, as a message is one event
class CorpusChanged(Message):
    """The explorer reads another corpus now: the evidence held of the old one was dropped."""


@dataclass(eq=False)  # identity, as a message is one event
class MarksChanged(Message):
    """A mark or a note changed (here, in another view, or in another explorer's file)."""


@dataclass(eq=False)  # identity, as a message is one event
class LayerMissing(Message):
    """A layer asked of the cache is not there: the background scan computes it."""

    layer: int


@dataclass(eq=False)  # identity, as a message is one event
class ExplorerFailed(Message):
    """Nothing can be shown (the model cannot be opened): the app ends with ``text``; ``error`` is
    the unexpected exception behind it, if any."""

    text: str
    error: BaseException | None = field(default=None)


@dataclass(eq=False)  # identity, as a message is one event
class WorkFailed(Message):
    """A worker of a pane ended in an error (``group`` names the work); the screen says so."""

    group: str | None
    error: BaseException


def report_failure(node: MessagePump, event: Worker.StateChanged) -> None:
    """Send a failed worker's error up as ``WorkFailed`` (worker events do not bubble)."""
    if event.state == WorkerState.ERROR and event.worker.error is not None:
        node.post_message(WorkFailed(event.worker.group, event.worker.error))
