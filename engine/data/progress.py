"""What a long computation is doing, as plain data for a progress callback: the stage (a fixed set
of words, typed), how far it got, and the rate and time left, computed here once for every front
end (the explorer's status line, the command line's stderr)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ScanStage = Literal["loading", "scanning", "cached", "done"]
ActivationStage = Literal[
    "cached", "loading", "tokenizing", "resuming", "running", "merging", "stopped", "done"
]


@dataclass(frozen=True)
class ScanProgress:
    """A layer scan: ``done`` of ``total`` vocabulary tokens of ``layer`` after ``seconds``."""

    stage: ScanStage
    layer: int | None = None
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    products: str = ""  # a computed layer's product precision (engine.scan.precision's label)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class ActivationProgress:
    """The corpus pass: ``done_tokens`` of ``total_tokens`` positions, ``start_tokens`` of them
    read by an earlier run (a resumed pass) and the rest in this run's ``seconds``."""

    stage: ActivationStage
    done_tokens: int = 0
    total_tokens: int = 0
    seconds: float = 0.0
    start_tokens: int = 0

    @property
    def fraction(self) -> float:
        return self.done_tokens / self.total_tokens if self.total_tokens else 0.0

    @property
    def rate(self) -> float:
        """Tokens per second so far in this run (0 before its first batch)."""
        return (self.done_tokens - self.start_tokens) / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """At the rate so far; None while there is no rate yet."""
        rate = self.rate
        return (self.total_tokens - self.done_tokens) / rate if rate > 0 else None


ProgressListener = Callable[[ScanProgress], None]
ActivationListener = Callable[[ActivationProgress], None]


AttributionStage = Literal["running", "ablating"]


@dataclass(frozen=True)
class AttributionProgress:
    """Attribution on a text: ``done`` of ``total`` steps after ``seconds``; a step is a forward
    pass's layer (``running``) or one ablated position (``ablating``)."""

    stage: AttributionStage
    done: int = 0
    total: int = 0
    seconds: float = 0.0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


AttributionListener = Callable[[AttributionProgress], None]


@dataclass(frozen=True)
class FitProgress:
    """``done`` of ``total`` prompts (this rank's share), ``start`` of them by an earlier run."""

    done: int
    total: int
    seconds: float = 0.0
    start: int = 0

    @property
    def seconds_left(self) -> float | None:
        fitted = self.done - self.start
        return (self.total - self.done) * self.seconds / fitted if fitted > 0 else None


FitListener = Callable[[FitProgress], None]
