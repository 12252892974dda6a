"""Progress of a headless command on stderr: a rich bar on a terminal, a line per layer otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from engine.data.progress import ActivationProgress, ScanProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class StderrProgress:
    """A ``ProgressListener`` for ``NeuronEngine.layer``; use it as a context manager."""

    def __init__(self, layers: list[int]):
        self.layers = layers
        self.interactive = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._finished = 0
        self._started = time.perf_counter()

    def __enter__(self) -> StderrProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("starting", total=len(self.layers))
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, event: ScanProgress) -> None:
        if event.stage == "loading":
            self.say("loading model weights")
        elif event.stage == "scanning" and self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, completed=self._finished + event.fraction, description=f"layer {event.layer}"
            )
        elif event.stage in ("done", "cached"):
            self._finished += 1
            how = "from cache"
            if event.stage == "done":
                how = f"computed in {event.seconds:.2f} s" + (
                    f", products in {event.products}" if event.products else ""
                )
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=self._finished, description=f"layer {event.layer}")
            else:
                self.say(
                    f"layer {event.layer}: {event.total} neurons {how} ({self._finished}/{len(self.layers)})"
                )

    def say(self, text: str) -> None:
        """A line on stderr, above the bar when there is one."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)


class ActivationStderrProgress:
    """Progress of the activation pass on stderr: tokens per second and time left, a line every
    few seconds (a terminal or a log file alike)."""

    def __init__(self, prefix: str = "", every_seconds: float = 5.0):
        self.prefix = prefix
        self.every_seconds = every_seconds
        self._last = -float("inf")

    def __call__(self, event: ActivationProgress) -> None:
        if event.stage == "running":
            now = time.perf_counter()
            if now - self._last < self.every_seconds and event.done_tokens < event.total_tokens:
                return
            self._last = now
            left = event.seconds_left
            self._say(
                f"{event.done_tokens}/{event.total_tokens} tokens, {event.rate:,.0f} tokens/s, "
                f"{'?' if left is None else f'{left:.0f}'} s left"
            )
        elif event.stage == "resuming":
            self._say(f"resuming at {event.done_tokens:,} of {event.total_tokens:,} tokens")
        elif event.stage == "stopped":
            self._say(
                f"stopped at {event.done_tokens:,} of {event.total_tokens:,} tokens: the evidence of "
                "what was read is kept, and the same command resumes from there"
            )
        elif event.stage == "loading":
            self._say("loading the model to run it")
        elif event.stage == "tokenizing":
            self._say("tokenizing the corpus")
        elif event.stage == "cached":
            self._say("activation evidence from cache")
        elif event.stage == "done":
            self._say(f"activation pass done in {event.seconds:.1f} s")

    def _say(self, text: str) -> None:
        try:
            print(f"{self.prefix}{text}", file=sys.stderr, flush=True)
        except OSError:
            pass


class FitStderrProgress:
    """Progress of a lens fit on stderr: a line per prompt, with the time left at the rate so far."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def __call__(self, event) -> None:  # engine.lens.fit.FitProgress
        if event.done == event.start:
            if event.start:
                self._say(f"resuming at prompt {event.start} of {event.total}")
            return
        left = event.seconds_left
        self._say(
            f"prompt {event.done}/{event.total} fitted, "
            f"{(event.seconds / (event.done - event.start)):.1f} s per prompt, "
            f"{'?' if left is None else f'{left:.0f}'} s left"
        )

    def _say(self, text: str) -> None:
        try:
            print(f"{self.prefix}{text}", file=sys.stderr, flush=True)
        except OSError:
            pass
