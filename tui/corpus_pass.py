"""The explorer's side of activation evidence: which corpus, where its evidence is, and how a
running corpus pass reads in the status line. Plain functions; the main screen's workers call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.activation_cache import cached_evidence, known_corpus_hash
from engine.corpus import AnyCorpus, default_corpus, default_corpus_name, load_corpus
from engine.session import NeuronEngine
from tui.state import ExplorerState

if TYPE_CHECKING:  # the job itself needs torch: imported where a pass starts
    from engine.activation_job import ActivationProgress


def corpus_hash(engine: NeuronEngine, state: ExplorerState) -> str | None:
    """The chosen corpus's content hash without building the embedded corpus (which takes
    seconds): known once a pass over it has run. None: no evidence can be in the cache yet."""
    if state.corpus is not None:
        return state.corpus.content_hash
    if state.corpus_spec is None:
        return known_corpus_hash(engine, default_corpus_name())
    return None


def look_up(engine: NeuronEngine, state: ExplorerState, layer: int):
    """The layer's evidence from the cache, or None."""
    digest = corpus_hash(engine, state)
    if digest is None:
        return None
    return cached_evidence(engine, digest, state.activation, state.settings, layer)


def the_corpus(state: ExplorerState) -> AnyCorpus:
    """The corpus given on the command line (loaded and checked before the explorer opened), or
    the embedded one, built here (seconds; a worker calls this, and it leaves the state alone)."""
    if state.corpus is not None:
        return state.corpus
    return load_corpus(state.corpus_spec) if state.corpus_spec else default_corpus()


def corpus_job(engine: NeuronEngine, state: ExplorerState, listener, cancelled):
    """The pass over the corpus as an ActivationJob (imported here: it needs torch)."""
    from engine.activation_job import ActivationJob

    layers = list(range(state.n_layers))
    return ActivationJob(
        engine,
        layers,
        the_corpus(state),
        state.activation,
        state.settings,
        listener=listener,
        cancelled=cancelled,
    )


def activity(progress: ActivationProgress) -> tuple[str, float | None]:
    """Status-line text and progress fraction of a running corpus pass."""
    if progress.stage == "running" and progress.total_tokens:
        rate = progress.done_tokens / progress.seconds if progress.seconds > 0 else 0.0
        left = (progress.total_tokens - progress.done_tokens) / rate if rate > 0 else 0.0
        return (
            f"corpus pass {progress.done_tokens:,}/{progress.total_tokens:,} tokens · {rate:,.0f}/s · "
            f"{left / 60:.0f} min left",
            progress.done_tokens / progress.total_tokens,
        )
    words = {
        "loading": "corpus pass: loading the model",
        "tokenizing": "corpus pass: tokenizing",
        "merging": "corpus pass: finishing",
        "cached": "corpus pass: from cache",
        "done": "corpus pass done",
    }
    return words.get(progress.stage, f"corpus pass: {progress.stage}"), None
