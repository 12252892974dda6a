"""The explorer's side of activation evidence: which corpus, where its evidence is, what a pass
reads by default, and how a running pass reads in a status line. Plain functions and a plain plan;
the screens' workers call them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from engine.data.evidence import EvidenceReading, LayerActivations
from engine.data.progress import ActivationProgress
from engine.neuron_engine import AnyCorpus, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tui.state import ExplorerState

CPU_TOKEN_CAP = 50_000  # what a pass reads by default on a CPU: minutes, not an hour
LAND_SECONDS = 2.0  # a one-layer pass shows its evidence this often (a full pass: at checkpoints)


def corpus_hash(engine: NeuronEngine, state: ExplorerState) -> str | None:
    """The chosen corpus's content hash without building the default corpus: known once a pass
    over it has run. None: no evidence can be in the cache yet."""
    if state.corpus is not None:
        return state.corpus.content_hash
    if state.corpus_spec is None:
        return engine.known_corpus_hash(engine.default_corpus_name())
    return None


def look_up(
    engine: NeuronEngine, state: ExplorerState, layer: int
) -> tuple[LayerActivations, EvidenceReading] | None:
    """The layer's evidence in the cache that has read the most of the corpus, or None."""
    digest = corpus_hash(engine, state)
    if digest is None:
        return None
    return engine.best_evidence(layer, digest, state.activation, state.settings)


def default_cap(engine: NeuronEngine, state: ExplorerState) -> int | None:
    """The token cap a pass starts with: the command line's --max-tokens, else the first 50,000
    tokens on a CPU and the whole corpus (None) on a GPU."""
    if state.activation.max_tokens is not None:
        return state.activation.max_tokens
    return CPU_TOKEN_CAP if engine.on_cpu else None


def cap_words(cap: int | None) -> str:
    return "the whole corpus" if cap is None else f"the first {cap:,} tokens"


@dataclass(frozen=True)
class PassPlan:
    """One corpus pass as the user chose it, with everything its worker needs (taken on the event
    loop: workers never read the state)."""

    layers: list[int]
    cap: int | None
    settings: ActivationSettings
    scan: ScanSettings
    corpus: AnyCorpus | None  # opened already (the command line's, the dialog's), else built from corpus_spec
    corpus_spec: str | None

    @property
    def capped(self) -> ActivationSettings:
        return replace(self.settings, max_tokens=self.cap)

    @property
    def layers_label(self) -> str:
        return f"L{self.layers[0]}" if len(self.layers) == 1 else f"{len(self.layers)} layers"


def plan_pass(
    state: ExplorerState,
    layers: list[int],
    cap: int | None,
    corpus: str | None = None,
    loaded: AnyCorpus | None = None,
) -> PassPlan:
    """A pass over ``layers`` reading ``cap`` tokens of the explorer's corpus, or of ``corpus`` (a
    spec as --corpus takes it, e.g. a PassChoice's), ``loaded`` when it was opened already (else
    the pass's worker opens it)."""
    if corpus is None:
        return PassPlan(list(layers), cap, state.activation, state.settings, state.corpus, state.corpus_spec)
    return PassPlan(list(layers), cap, state.activation, state.settings, loaded, corpus)


def run_planned_pass(
    engine: NeuronEngine,
    plan: PassPlan,
    listener: Callable[[ActivationProgress], None],
    cancelled: Callable[[], bool],
    on_landed: Callable[[int, LayerActivations, EvidenceReading], None],
) -> dict[int, LayerActivations] | None:
    """The pass through the engine (a worker calls this); each layer's evidence lands as it is
    read: every 2 s for one layer, at every checkpoint for several. Stopped: ScanCancelled."""
    return engine.corpus_pass(
        plan.layers,
        the_corpus(plan.corpus, plan.corpus_spec),
        plan.capped,
        plan.scan,
        listener=listener,
        cancelled=cancelled,
        on_landed=on_landed,
        land_seconds=LAND_SECONDS if len(plan.layers) == 1 else None,
    )


def the_corpus(corpus: AnyCorpus | None, spec: str | None) -> AnyCorpus:
    """The corpus opened already (the command line's, checked before the explorer opened, or the
    pass dialog's), else the one ``spec`` names (None: the default), opened here (a worker calls
    this: a built-in corpus takes up to seconds to build)."""
    if corpus is not None:
        return corpus
    return NeuronEngine.corpus(spec)


def _time_left(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def activity(progress: ActivationProgress, name: str = "corpus pass") -> tuple[str, float | None]:
    """Status-line text and progress fraction of a running pass (``name`` says which)."""
    done, total = progress.done_tokens, progress.total_tokens
    if progress.stage == "running" and total:
        return (
            f"{name} {done:,}/{total:,} tokens · {progress.rate:,.0f}/s · "
            f"{_time_left(progress.seconds_left)} left",
            progress.fraction,
        )
    if progress.stage == "resuming":
        return f"{name}: resuming at {done:,} of {total:,} tokens", progress.fraction
    if progress.stage == "stopped":
        return f"{name} stopped at {done:,} of {total:,} tokens: what it read is kept", None
    words: dict[str, str] = {
        "loading": f"{name}: loading the model",
        "tokenizing": f"{name}: tokenizing",
        "running": f"{name}: starting",
        "merging": f"{name}: finishing",
        "cached": f"{name}: from cache",
        "done": f"{name} done",
    }
    return words[progress.stage], None
