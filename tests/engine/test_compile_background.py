"""Under NEURON_TUI_COMPILE=auto the block pass compiles in the background: layers scan eagerly
until it is ready, and no caller waits for the compiler."""

from __future__ import annotations

import threading

import torch

from engine.scan import block_pass


def test_auto_compiles_in_the_background_and_on_waits(monkeypatch):
    release = threading.Event()
    compiled_for: list = []

    def slow_compile(shape, device):  # stands in for torch.compile's seconds
        compiled_for.append((shape, device))
        release.wait()
        return block_pass.block_statistics

    monkeypatch.setattr(block_pass, "_compile", slow_compile)
    monkeypatch.setattr(block_pass, "wanted", lambda shape, device: True)
    monkeypatch.setenv(block_pass.COMPILE_ENV, "auto")
    passes = block_pass.CompiledPasses()
    cpu = torch.device("cpu")
    assert passes.get((4096, 64), cpu) is None  # compiling: the caller scans eagerly meanwhile
    assert passes.get((4096, 64), cpu) is None  # still compiling: no second compile is started
    release.set()
    passes.wait()
    assert passes.get((4096, 64), cpu) is block_pass.block_statistics
    assert compiled_for == [((1024, 64), cpu)]

    monkeypatch.setenv(block_pass.COMPILE_ENV, "on")
    waiting = block_pass.CompiledPasses()
    assert waiting.get((512, 64), cpu) is block_pass.block_statistics  # compiled before returning
