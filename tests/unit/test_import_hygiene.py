"""The engine never imports Textual; the CLI's help and a warm cache never import torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import engine
from tests.helpers.cli import ROOT


def _modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return set(done.stdout.split())


def test_no_engine_module_imports_textual():
    names = [f"engine.{m.name}" for m in pkgutil.walk_packages(engine.__path__, "")]
    code = "\n".join(f"import {name}" for name in names)
    loaded = _modules_after(code)
    assert not any(name == "textual" or name.startswith("textual.") for name in loaded)


def test_help_imports_neither_torch_nor_textual():
    code = "import sys\nfrom tui.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    loaded = _modules_after(code)
    assert "torch" not in loaded and "textual" not in loaded


def test_warm_cache_reads_without_torch(tiny_gguf, tmp_path):
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ScanSettings

    NeuronEngine(EngineOptions(model=str(tiny_gguf), device="cpu", cache_dir=tmp_path / "c")).layer(
        2, ScanSettings()
    )
    code = (
        "from engine.neuron_engine import EngineOptions, NeuronEngine\n"
        f"options = EngineOptions(model={str(tiny_gguf)!r}, device='cpu', "
        f"cache_dir={str(tmp_path / 'c')!r})\n"
        "e = NeuronEngine(options)\n"
        "from engine.settings import ScanSettings\n"
        "r = e.layer(2, ScanSettings()); assert e.vocabulary.text(256) == ' coming' and not e.source_loaded\n"
        "import tui.screens.detail, tui.screens.main  # the views a warm start opens\n"
        "import tui.app, tui.corpus_pass  # and the evidence look-up it runs as a layer opens\n"
        "assert e.known_corpus_hash('default') is None"
    )
    loaded = _modules_after(code)
    assert "torch" not in loaded
