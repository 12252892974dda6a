"""Fitting a dictionary on the model's activations with EleutherAI's sparsify trainer.

The trainer is sparsify's own (``sparsify.Trainer``: top-k sparse autoencoders and transcoders,
its optimiser, its dead-latent bookkeeping); this module gives it the model, the corpus's windows
and a place to keep its checkpoints, hears its steps as progress, and stops it between steps. A
fit is user data beside the lenses (``$NEURON_TUI_DATA_DIR/dictionaries/<model>/<fit>/``): the
trainer saves its whole state there every ``SAVE_EVERY`` steps and when stopped, and the next run
of the same fit resumes at that step (sparsify's ``load_state``). A finished fit is a sparsify
checkpoint folder, read with ``--dictionary`` like any other.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.data.progress import FitListener, FitProgress
from engine.errors import ScanCancelled, UserError
from engine.settings import DictionaryFitSettings

SAVE_EVERY = 50  # steps between checkpoints: a stopped fit loses at most this many
FINISHED = "fitted.json"
TRAINING = ".training"  # the trainer's own run folder (its state), hidden from --dictionary


def fits_folder(fingerprint: str, data_dir: Path) -> Path:
    """Where the fits of a model are kept: under the data directory, beside the collections."""
    return data_dir / "dictionaries" / fingerprint[:32]


def fitted_dictionaries(fingerprint: str, data_dir: Path) -> list[Path]:
    """The finished fits of this model, newest first."""
    folder = fits_folder(fingerprint, data_dir)
    found = [path.parent for path in folder.glob(f"*/{FINISHED}")] if folder.is_dir() else []
    return sorted(found, key=lambda path: (path / FINISHED).stat().st_mtime_ns, reverse=True)


class _Steps:
    """Stands in for the trainer's progress bar: each step it reports is said to ``listener``, and
    a cancelled fit stops there (between steps, its state whole)."""

    def __init__(self, total: int, start: int, listener: FitListener | None, cancelled) -> None:
        self.done, self.total, self.start = start, total, start
        self.listener, self.cancelled = listener, cancelled
        self.started = time.perf_counter()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.listener:
            seconds = time.perf_counter() - self.started
            self.listener(FitProgress(self.done, self.total, seconds, self.start))
        if self.cancelled is not None and self.cancelled() and self.done < self.total:
            raise ScanCancelled()

    def close(self) -> None:
        pass


def fit_dictionary(
    model,
    windows: np.ndarray,
    settings: DictionaryFitSettings,
    folder: Path,
    listener: FitListener | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Path:
    """Train (or resume) the dictionary of ``settings`` on ``windows`` [n, context] (token ids)
    through ``model`` (a transformers model) into ``folder``; the finished fit's folder."""
    from datasets import Dataset

    if (folder / FINISHED).is_file():
        return folder
    quiet = contextlib.redirect_stdout(io.StringIO())  # sparsify prints its sizes and steps
    with quiet:
        import sparsify.trainer as trainer_module
        from sparsify import SparseCoderConfig, TrainConfig, Trainer

    latents = settings.latents or 8 * int(model.config.hidden_size)
    module = _module_name(model, settings)
    total = -(-len(windows) // settings.batch_size)  # the trainer's loader keeps the last, short batch
    config = TrainConfig(
        SparseCoderConfig(num_latents=latents, k=settings.k, transcode=settings.kind == "transcoder"),
        batch_size=settings.batch_size,
        # Adam: its whole state is saved and loaded, so a resumed fit ends as an unstopped one
        # (sparsify's default, schedule-free signum, saves its averaged weights in their place).
        optimizer="adam",
        lr=settings.lr,
        lr_warmup_steps=max(1, total // 10),
        hookpoints=[module],
        init_seeds=[settings.seed],
        save_every=SAVE_EVERY,
        log_to_wandb=False,
        save_dir=str(folder),
        run_name=TRAINING,
    )
    dataset = Dataset.from_dict({"input_ids": windows.astype(np.int64)}).with_format("torch")
    run = folder / TRAINING
    with quiet:
        trainer = Trainer(config, dataset, model)
        if (run / "state.pt").is_file():
            trainer.load_state(str(run))
    steps = _Steps(total, trainer.global_step, listener, cancelled)
    if listener:
        listener(FitProgress(steps.start, total, 0.0, steps.start))
    original = trainer_module.tqdm
    trainer_module.tqdm = lambda *args, **kwargs: steps  # sparsify's only progress hook
    try:
        with quiet:
            trainer.fit()
    except (ScanCancelled, KeyboardInterrupt):
        with quiet:
            trainer.save()  # the state at the last whole step: the next run resumes there
        raise
    finally:
        trainer_module.tqdm = original
    # The dictionary under the name sparsify gives the place in a plain model (layers.L.mlp).
    target = folder / settings.hookpoint
    target.mkdir(exist_ok=True)
    for name in ("cfg.json", "sae.safetensors"):
        shutil.copyfile(run / module / name, target / name)
    (folder / FINISHED).write_text(json.dumps({"settings": settings.__dict__, "latents": latents}))
    shutil.rmtree(run, ignore_errors=True)  # the trainer's state: a finished fit never resumes
    return folder


def _module_name(model, settings: DictionaryFitSettings) -> str:
    """The name of the module to train on in ``model``: ``layers.L`` (the block's output) or its
    MLP, which TransformerLens's bridge keeps inside its own wrapper of the block."""
    names = {name for name, _ in model.base_model.named_modules()}
    block = f"layers.{settings.layer}"
    if settings.site == "resid" and block in names:
        return block
    for name in (f"{block}.mlp", f"{block}._original_component.mlp"):
        if settings.site == "mlp" and name in names:
            return name
    raise UserError(f"the model has no module {settings.hookpoint} to fit a dictionary on")
