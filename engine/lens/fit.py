"""Fitting a Jacobian lens with TransformerLens, a prompt at a time: resumable, split over ranks.

The prompts are the corpus cut into windows of ``max_seq_len - 1`` tokens (the model's own
tokenizer; TransformerLens adds the BOS token back, or none where the model has no row for it and
the windows are ``max_seq_len`` tokens), the first ``prompts`` of them. Each prompt is
fitted on its own by ``JacobianLens.fit`` and folded into a running lens by ``JacobianLens.merge``
(a mean weighted by prompts, so the result is the fit of all of them). After every prompt the running
lens is written whole to a partial file (engine.lens.store), so a killed fit loses at most one
prompt. Under torchrun, rank r fits prompts r, r + world, ...; rank 0 merges the ranks' lenses with
``merge`` and writes the lens. The fit's settings name the file, so asking again finds it.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from engine.activations.documents import AnyCorpus
from engine.data.progress import FitListener, FitProgress
from engine.errors import ScanCancelled, UserError, first_line
from engine.lens import store
from engine.runtime.ranks import Ranks
from engine.settings import FitSettings

if TYPE_CHECKING:
    import torch
    from transformer_lens.tools.analysis import JacobianLens


def corpus_prompts(tokenizer, corpus: AnyCorpus, settings: FitSettings, bos: bool = True) -> list[str]:
    """The first ``settings.prompts`` windows of ``max_seq_len`` tokens (less the BOS, when one is
    put before each), as text."""
    width = settings.max_seq_len - 1 if bos else settings.max_seq_len
    prompts: list[str] = []
    for _document, _first, text in corpus.pieces():
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - width + 1, width):
            prompts.append(tokenizer.decode(ids[start : start + width]))
            if len(prompts) == settings.prompts:
                return prompts
    if not prompts:
        raise UserError(f"the corpus {corpus.name} has no window of {width} tokens: use a larger corpus")
    raise UserError(
        f"the corpus {corpus.name} has only {len(prompts)} windows of {width} tokens: "
        f"ask for --prompts {len(prompts)} or fewer, or a shorter --max-seq-len"
    )


@contextmanager
def bos_in_vocabulary(bridge) -> Iterator[bool]:
    """Prompts tokenized with a BOS only where the model has an embedding row for it; whether they
    are. TransformerLens gives a tokenizer that has no BOS one of its own (``<|endoftext|>``, added
    past a byte-level vocabulary that fills the model's), and the model cannot embed that id: such
    a model is fitted without a BOS, as the corpus pass runs it."""
    bos = getattr(bridge.tokenizer, "bos_token_id", None)
    before = getattr(bridge.cfg, "default_prepend_bos", True)
    usable = bos is not None and bos < bridge.cfg.d_vocab
    bridge.cfg.default_prepend_bos = before and usable
    try:
        yield bridge.cfg.default_prepend_bos
    finally:
        bridge.cfg.default_prepend_bos = before


def _payload(lens, next_prompt: int) -> dict:
    """TransformerLens's artifact format (float32) plus where this rank's fit goes on."""
    import torch

    payload: dict = {"next_prompt": next_prompt}
    if lens is not None:
        payload.update(
            J={layer: matrix.to(torch.float32) for layer, matrix in lens.jacobians.items()},
            n_prompts=lens.n_prompts,
            source_layers=lens.source_layers,
            d_model=lens.d_model,
            metadata=lens.metadata,
        )
    return payload


def _lens_from_payload(payload: dict) -> JacobianLens | None:
    from transformer_lens.tools.analysis import JacobianLens

    if "J" not in payload:
        return None
    return JacobianLens(
        {int(layer): matrix for layer, matrix in payload["J"].items()},
        n_prompts=int(payload["n_prompts"]),
        d_model=int(payload["d_model"]),
        metadata=payload.get("metadata"),
    )


def _to_bytes(payload: dict) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


class LensFit:
    """One rank's share of a fit; ``run()`` returns the lens file's path on rank 0, else None."""

    def __init__(
        self,
        bridge,
        prompts: list[str],
        settings: FitSettings,
        corpus_label: str,
        corpus_hash: str,
        fingerprint: str,
        ranks,
        device,
        data_dir: Path | None = None,
        listener: FitListener | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.bridge = bridge
        self.prompts = prompts
        self.settings = settings
        self.corpus_label = corpus_label
        self.ranks = ranks
        self.device = device  # where the point-to-point sends go: the rank's GPU under NCCL
        self.listener = listener
        self.cancelled = cancelled
        self.tag = settings.tag(corpus_hash)
        self.final = store.fitted_lens_path(fingerprint, self.tag, data_dir)
        self.partials = [
            store.partial_path(fingerprint, self.tag, rank, ranks.world, data_dir)
            for rank in range(ranks.world)
        ]
        self.mine = list(range(ranks.rank, len(prompts), ranks.world))

    def run(self) -> Path | None:
        """Fit this rank's share (the caller has checked that no earlier fit is on rank 0)."""
        lens = self._fit_share()
        return self._gather(lens)

    def _resume(self) -> tuple[JacobianLens | None, int]:
        """The running lens and the next prompt, from this rank's partial file when it has one."""
        import torch

        path = self.partials[self.ranks.rank]
        if not path.is_file():
            return None, 0
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return _lens_from_payload(payload), int(payload["next_prompt"])
        except Exception:  # a damaged partial (a full disk): start this rank's share again
            path.unlink(missing_ok=True)
            return None, 0

    def _fit_share(self):
        from transformer_lens.tools.analysis import JacobianLens

        lens, next_prompt = self._resume()
        remaining = [index for index in self.mine if index >= next_prompt]
        start = len(self.mine) - len(remaining)
        began = time.perf_counter()
        self._report(start, start, began)
        for count, index in enumerate(remaining, start + 1):
            if self.cancelled is not None and self.cancelled():
                raise ScanCancelled()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a too-short prompt is skipped below, not warned of
                    one = JacobianLens.fit(
                        self.bridge,
                        [self.prompts[index]],
                        corpus=self.corpus_label,
                        dim_batch=self.settings.dim_batch,
                        max_seq_len=self.settings.max_seq_len,
                        skip_first_positions=self.settings.skip_first_positions,
                        show_progress=False,
                    )
            except ValueError as error:
                if "too short" not in str(error):
                    raise UserError(
                        f"TransformerLens cannot fit a lens on this model: {first_line(error)}"
                    ) from error
                one = None  # the window re-tokenized shorter than the skipped positions
            if one is not None:
                lens = one if lens is None else JacobianLens.merge([lens, one])
            store.write_whole(self.partials[self.ranks.rank], _to_bytes(_payload(lens, index + 1)))
            self._report(count, start, began)
        return lens

    def _report(self, done: int, start: int, began: float) -> None:
        if self.listener is not None:
            self.listener(FitProgress(done, len(self.mine), time.perf_counter() - began, start))

    def _gather(self, lens) -> Path | None:
        """Rank 0 merges every rank's lens and writes the file; the others send theirs."""
        import torch
        from transformer_lens.tools.analysis import JacobianLens

        from engine.runtime import distributed

        device = self.device
        if not self.ranks.is_writer:
            distributed.send_bytes(_to_bytes(_payload(lens, len(self.prompts))), 0, device)
            return None
        lenses = [lens] + [
            _lens_from_payload(
                torch.load(io.BytesIO(distributed.receive_bytes(rank, device)), weights_only=True)
            )
            for rank in range(1, self.ranks.world)
        ]
        lenses = [one for one in lenses if one is not None]
        if not lenses:
            raise UserError("no prompt was long enough to fit on: use a longer --max-seq-len")
        merged = lenses[0] if len(lenses) == 1 else JacobianLens.merge(lenses)
        temporary = self.final.with_name(f".{self.final.name}.tmp")
        merged.save(str(temporary), dtype=torch.float32)  # float32: the lens as fitted, not fp16
        temporary.replace(self.final)
        for path in self.partials:
            path.unlink(missing_ok=True)
        return self.final


class FitHost(Protocol):
    """What a fit needs of the engine that runs it (``NeuronEngine`` is one)."""

    @property
    def fingerprint(self) -> str: ...

    def rank_device(self, ranks: Ranks) -> torch.device: ...

    def activation_model(self, ranks: Ranks | None = None) -> tuple: ...


def fit_lens(
    host: FitHost,
    corpus: AnyCorpus,
    settings: FitSettings,
    ranks: Ranks,
    listener: FitListener | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Path | None:
    """Fit (or find) the lens of ``settings`` on ``corpus``; its path on rank 0, None elsewhere."""
    import torch

    from engine.runtime.distributed import start, sum_all

    device = host.rank_device(ranks)
    start(ranks, device)
    done = store.fitted_lens_path(host.fingerprint, settings.tag(corpus.content_hash))
    # Rank 0's data directory decides (ranks on other machines have their own): all go on or none.
    fitted = torch.tensor([int(ranks.is_writer and done.is_file())], device=device)
    if int(sum_all(fitted, ranks).item()):  # fitted before: no model to load
        return done if ranks.is_writer else None
    bridge, tokenizer, device = host.activation_model(ranks)
    with bos_in_vocabulary(bridge) as bos:
        fit = LensFit(
            bridge,
            corpus_prompts(tokenizer, corpus, settings, bos),
            settings,
            f"{corpus.name}:{corpus.content_hash[:16]}",
            corpus.content_hash,
            host.fingerprint,
            ranks,
            device,
            listener=listener,
            cancelled=cancelled,
        )
        return fit.run()
