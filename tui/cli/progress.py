"""Progress of a headless command on stderr: a rich bar on a terminal, a line per layer otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from engine.data.progress import ActivationProgress, AttributionProgress, FitProgress, ScanProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def say(text: str) -> None:
    """A line on stderr, now; nothing when stderr is gone (an SSH session dropped)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def _how(event: ScanProgress, unit: str = "neurons") -> str:
    """What a finished layer event says of its neurons (or a dictionary's features)."""
    if event.stage == "cached":
        return f"{event.total} {unit} from cache"
    products = f", products in {event.products}" if event.products else ""
    return f"{event.total} {unit} computed in {event.seconds:.2f} s{products}"


class StderrProgress:
    """A ``ProgressListener`` for ``NeuronEngine.layer``; use it as a context manager.

    With ``inputs`` (scan's records carry each layer's input side too), ``inputs`` is the listener for
    ``NeuronEngine.inputs`` and a layer is told of once ``layer_done`` says it is whole: one line that
    says what was computed, so that "from cache" is said only of a layer nothing was computed for.
    """

    def __init__(self, layers: list[int], inputs: bool = False, unit: str = "neurons"):
        self.layers, self.unit = layers, unit
        self.with_inputs = inputs
        self.interactive = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._finished = 0
        self._weights: dict[int, ScanProgress] = {}  # the weight side's last word, per layer
        self._input_seconds: dict[int, float] = {}  # layers whose input side was computed
        self._announced = False

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
        elif event.stage == "scanning":
            self._show(f"layer {event.layer}", event.fraction)
        elif event.layer is not None:  # done or cached
            self._weights[event.layer] = event
            if not self.with_inputs:
                self.layer_done(event.layer)

    def inputs(self, event: ScanProgress) -> None:
        """The listener for ``NeuronEngine.inputs``: its input side, said as it is computed."""
        if event.stage == "loading":
            self.say("loading model weights")
        elif event.stage == "scanning":
            if not self._announced:
                self.say("computing the input side: each MLP input row against the token embeddings")
                self._announced = True
            self._show(f"layer {event.layer}: input side", 0.0)
        elif event.stage == "done" and event.layer is not None:
            self._input_seconds[event.layer] = event.seconds

    def layer_done(self, layer: int) -> None:
        """Layer ``layer`` is whole: counted, and told of in one line."""
        self._finished += 1
        weights = self._weights.pop(layer, None)
        seconds = self._input_seconds.pop(layer, None)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self._finished, description=f"layer {layer}")
            return
        if weights is None:
            how = "scores from another rank"  # under torchrun, rank 0 receives the others' layers
        elif seconds is not None and weights.stage == "cached":
            how = f"{weights.total} neurons: scores cached"
        else:
            how = _how(weights, self.unit)
        if seconds is not None:
            how += f", input side computed in {seconds:.2f} s"
        self.say(f"layer {layer}: {how} ({self._finished}/{len(self.layers)})")

    def _show(self, description: str, fraction: float) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self._finished + fraction, description=description)

    def say(self, text: str) -> None:
        """A line on stderr, above the bar when there is one."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            say(text)


class _PrefixedLines:
    """Lines on stderr, each after this process's prefix (its rank under torchrun)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def _say(self, text: str) -> None:
        say(f"{self.prefix}{text}")


class ActivationStderrProgress(_PrefixedLines):
    """Progress of the activation pass on stderr: tokens per second and time left, a line every
    few seconds (a terminal or a log file alike)."""

    _SAID = {
        "loading": "loading the model to run it",
        "tokenizing": "tokenizing the corpus",
        "cached": "activation evidence from cache",
    }

    def __init__(self, prefix: str = "", every_seconds: float = 5.0):
        super().__init__(prefix)
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
        elif event.stage in self._SAID:
            self._say(self._SAID[event.stage])
        elif event.stage == "done":
            self._say(f"activation pass done in {event.seconds:.1f} s")


class AttributionStderrProgress(_PrefixedLines):
    """Progress of an attribution or an ablation on stderr: a line every few seconds once it runs
    longer than that (a short run says nothing)."""

    def __init__(self, every_seconds: float = 5.0):
        super().__init__()
        self.every_seconds = every_seconds
        self._last = time.perf_counter()

    def __call__(self, event: AttributionProgress) -> None:
        now = time.perf_counter()
        if now - self._last < self.every_seconds:
            return
        self._last = now
        what = "forward pass layers" if event.stage == "running" else "positions ablated"
        self._say(f"{event.done}/{event.total} {what}, {event.seconds:.1f} s")


class FitStderrProgress(_PrefixedLines):
    """Progress of a fit on stderr (a lens's prompts, a dictionary's training steps): a line per
    ``unit`` at most every ``every_seconds`` (and the last), with the time left at the rate so far."""

    def __init__(self, prefix: str = "", unit: str = "prompt", every_seconds: float = 0.0):
        super().__init__(prefix)
        self.unit, self.every_seconds = unit, every_seconds
        self._said_at: float | None = None
        self.done = 0  # the last step or prompt fitted

    def __call__(self, event: FitProgress) -> None:
        self.done = event.done
        if event.done == event.start:
            if event.start:
                self._say(f"resuming at {self.unit} {event.start} of {event.total}")
            return
        now = time.monotonic()
        due = self._said_at is None or now - self._said_at >= self.every_seconds
        if not due and event.done < event.total:
            return
        self._said_at = now
        left = event.seconds_left
        self._say(
            f"{self.unit} {event.done}/{event.total} fitted, "
            f"{(event.seconds / (event.done - event.start)):.1f} s per {self.unit}, "
            f"{'?' if left is None else f'{left:.0f}'} s left"
        )
