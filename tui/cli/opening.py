"""From parsed arguments to plain values (``EngineOptions``, ``ScanSettings``, ``ActivationSettings``)
and an open engine: every cheap check first, set-up warnings shown, the cache closed at the end."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.settings import ActivationSettings, Projection, ScanSettings
from tui.cli.options import DEFAULTS, Command
from tui.cli.progress import say

if TYPE_CHECKING:
    from engine.neuron_engine import EngineOptions, NeuronEngine


def engine_options(args: argparse.Namespace) -> EngineOptions:
    from engine.neuron_engine import EngineOptions

    return EngineOptions(
        model=args.model,
        device=args.device,
        loader=args.loader,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        chunk_tokens=args.chunk_tokens,
    )


def scan_settings(args: argparse.Namespace) -> ScanSettings:
    from engine.neuron_engine import NeuronEngine

    projection = Projection(args.fold_final_norm, args.center_unembed, args.cosine)
    dtype = NeuronEngine.precision(args.device, args.dtype)
    return ScanSettings(top_k=getattr(args, "top_k", DEFAULTS.top_k), dtype=dtype, projection=projection)


def activation_settings(args: argparse.Namespace) -> ActivationSettings:
    return ActivationSettings(
        context=args.context,
        examples=args.examples,
        lift_positions=args.lift_positions,
        max_tokens=args.max_tokens,
        batch_tokens=args.batch_tokens,
    )


def with_prefix(text: str) -> str:
    return text if text.startswith("warning: ") else f"warning: {text}"


class WarningFormatter(logging.Formatter):
    """Each warning on one line, said once to be a warning."""

    def format(self, record: logging.LogRecord) -> str:
        return with_prefix(record.getMessage())


@contextmanager
def opened_engine(command: Command, args: argparse.Namespace) -> Iterator[tuple[NeuronEngine, ScanSettings]]:
    """The engine for a command: every cheap check first (output path, options), set-up warnings
    shown, the cache closed at the end."""
    from engine.data.layers import check_layer_spec
    from engine.neuron_engine import NeuronEngine, check_output_path

    if command.takes("output"):
        check_output_path(args.output)
    if command.takes("layers"):
        check_layer_spec(args.layers)
    if args.dictionary and not command.reads_dictionary:
        raise UserError(f"'{command.prog}' {command.why_no_dictionary}: leave out --dictionary")
    settings = scan_settings(args)
    engine = NeuronEngine(engine_options(args))  # its warnings go to logging: stderr, at once
    try:
        if getattr(args, "lens", "logit") != "logit":  # the lens file read and checked: one line if bad
            settings = replace(settings, lens=engine.open_lens(args.lens))
        if args.dictionary:  # the dictionaries read and checked against the model: one line if bad
            settings = replace(settings, units=engine.open_dictionary(args.dictionary))
        engine.check(settings)  # the model's header, the device, top-k: before any heavy work
    except BaseException:
        engine.close()
        raise
    try:
        yield engine, settings
    finally:
        engine.close()
        if command.takes_terminal:  # the explorer showed them on screen; they stay readable after it
            for warning in engine.warnings:
                say(with_prefix(warning))


def open_against(engine: NeuronEngine, settings: ScanSettings, model: str) -> NeuronEngine:
    """The other checkpoint's engine (the explorer's and diff's B), checked against this one in one
    line before either model's weights are read, and reading through this one's lens file."""
    from engine.neuron_engine import NeuronEngine

    other = NeuronEngine(replace(engine.options, model=model))
    try:
        engine.check_comparable(other)
        lens_file = engine.lens_file(settings.lens)
        if lens_file is not None:
            other.open_lens(f"jacobian:{lens_file.path}")
    except BaseException:
        other.close()
        raise
    return other
