"""Messages that worker threads send to the screen: results arrive as data, never as widget calls."""

from __future__ import annotations

from textual.message import Message

from engine.null import NullBaseline
from engine.results import LayerResult
from engine.sources.base import ModelInfo
from engine.summary import LayerSummary
from engine.tokens import Vocabulary
from tui.state import TokenTable


class EngineReady(Message):
    def __init__(self, info: ModelInfo, vocab: Vocabulary) -> None:
        super().__init__()
        self.info, self.vocab = info, vocab


class LayerReady(Message):
    """A layer's full results, for the layer the user is looking at."""

    def __init__(self, result: LayerResult, generation: int) -> None:
        super().__init__()
        self.result, self.generation = result, generation


class LayerSummarised(Message):
    """A layer finished (or was read from the cache) in the background scan: its summary and the
    per-token arrays that token search and coverage use (the full result stays on disk)."""

    def __init__(
        self, summary: LayerSummary, generation: int, token_table: TokenTable, unit_best: TokenTable
    ) -> None:
        super().__init__()
        self.summary, self.generation = summary, generation
        self.token_table, self.unit_best = token_table, unit_best


class EvidenceReady(Message):
    """A layer's activation evidence from the cache or a corpus pass; None: the cache has none."""

    def __init__(self, layer: int, evidence, generation: int) -> None:
        super().__init__()
        self.layer, self.evidence, self.generation = layer, evidence, generation


class NullReady(Message):
    def __init__(self, null: NullBaseline, generation: int) -> None:
        super().__init__()
        self.null, self.generation = null, generation


class ScanFinished(Message):
    """The background scan has every layer and the null baseline of this generation."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class Activity(Message):
    """What the background is doing; a newer one replaces a queued older one."""

    def __init__(self, text: str, fraction: float | None, layer: int | None = None) -> None:
        super().__init__()
        self.text, self.fraction, self.layer = text, fraction, layer

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Activity)
