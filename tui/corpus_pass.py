"""The explorer's side of activation evidence: which corpus, where its evidence is, and how a
running corpus pass reads in the status line. Plain functions; the main screen's workers call them.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.corpus import AnyCorpus, default_corpus, default_corpus_name, load_corpus
from engine.evidence import LayerActivations
from engine.neuron_engine import NeuronEngine
from engine.progress import ActivationProgress
from tui.state import ExplorerState


def corpus_hash(engine: NeuronEngine, state: ExplorerState) -> str | None:
    """The chosen corpus's content hash without building the embedded corpus (which takes
    seconds): known once a pass over it has run. None: no evidence can be in the cache yet."""
    if state.corpus is not None:
        return state.corpus.content_hash
    if state.corpus_spec is None:
        return engine.known_corpus_hash(default_corpus_name())
    return None


def look_up(engine: NeuronEngine, state: ExplorerState, layer: int):
    """The layer's evidence from the cache, or None."""
    digest = corpus_hash(engine, state)
    if digest is None:
        return None
    return engine.evidence(layer, digest, state.activation, state.settings)


def the_corpus(state: ExplorerState) -> AnyCorpus:
    """The corpus given on the command line (loaded and checked before the explorer opened), or
    the embedded one, built here (seconds; a worker calls this, and it leaves the state alone)."""
    if state.corpus is not None:
        return state.corpus
    return load_corpus(state.corpus_spec) if state.corpus_spec else default_corpus()


def run_corpus_pass(
    engine: NeuronEngine,
    state: ExplorerState,
    listener: Callable[[ActivationProgress], None],
    cancelled: Callable[[], bool],
) -> dict[int, LayerActivations] | None:
    """The pass over the corpus for every layer, through the engine (a worker calls this)."""
    layers = list(range(state.n_layers))
    corpus = the_corpus(state)
    return engine.corpus_pass(
        layers, corpus, state.activation, state.settings, listener=listener, cancelled=cancelled
    )


def activity(progress: ActivationProgress) -> tuple[str, float | None]:
    """Status-line text and progress fraction of a running corpus pass."""
    if progress.stage == "running" and progress.total_tokens:
        left = progress.seconds_left
        return (
            f"corpus pass {progress.done_tokens:,}/{progress.total_tokens:,} tokens · "
            f"{progress.rate:,.0f}/s · {'?' if left is None else f'{left / 60:.0f}'} min left",
            progress.fraction,
        )
    words: dict[str, str] = {
        "loading": "corpus pass: loading the model",
        "tokenizing": "corpus pass: tokenizing",
        "running": "corpus pass: starting",
        "merging": "corpus pass: finishing",
        "cached": "corpus pass: from cache",
        "done": "corpus pass done",
    }
    return words[progress.stage], None
