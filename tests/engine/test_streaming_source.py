"""Checkpoints streamed tensor by tensor against the same checkpoints built through
TransformerBridge, on tiny random sharded checkpoints of six architectures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.neuron_engine import EngineOptions, NeuronEngine
from engine.settings import Projection, ScanSettings
from engine.sources.bridge_source import BridgeSource
from engine.sources.safetensors_source import SafetensorsSource
from tests.helpers.cli import run_cli
from tests.helpers.models import write_hf_checkpoint

KINDS = ["llama", "gpt2", "gpt_neox", "gemma", "qwen2", "mistral"]


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    # Several shards and an index.
    write_hf_checkpoint(folder, request.param, seed=KINDS.index(request.param), max_shard_size="40KB")
    return request.param, folder


def test_streamed_tensors_equal_the_bridge_ones(checkpoint):
    kind, folder = checkpoint
    assert (folder / "model.safetensors.index.json").is_file()
    streamed = SafetensorsSource(folder, "fp", kind)
    bridge = BridgeSource(folder, "fp", kind)
    assert streamed.info == bridge.info
    np.testing.assert_array_equal(streamed.unembed(), bridge.unembed())
    for layer in range(streamed.info.n_layers):
        np.testing.assert_array_equal(streamed.mlp_out(layer), bridge.mlp_out(layer))
    ours, theirs = streamed.final_norm(), bridge.final_norm()
    np.testing.assert_array_equal(ours.scale, theirs.scale)
    assert ours.centres == theirs.centres == (kind in ("gpt2", "gpt_neox"))
    assert streamed.vocabulary().texts == bridge.vocabulary().texts
    # The input side's tensors: W_E, each layer's input rows and the norm before its MLP.
    np.testing.assert_array_equal(streamed.embedding(), bridge.embedding())
    ours_rows, theirs_rows = streamed.embedding_rows(), bridge.embedding_rows()
    assert ours_rows.shape == theirs_rows.shape == bridge.embedding().shape
    ids = np.array([5, 0, 299, 5, 17])
    np.testing.assert_array_equal(ours_rows.take(ids), bridge.embedding()[ids])
    np.testing.assert_array_equal(ours_rows.rows(290, 400), theirs_rows.rows(290, 400))
    for layer in range(streamed.info.n_layers):
        ours_in, theirs_in = streamed.mlp_in(layer), bridge.mlp_in(layer)
        np.testing.assert_array_equal(ours_in.up, theirs_in.up)
        assert (ours_in.gate is None) == (theirs_in.gate is None) == (kind in ("gpt2", "gpt_neox"))
        if ours_in.gate is not None:
            np.testing.assert_array_equal(ours_in.gate, theirs_in.gate)
        ours_norm, theirs_norm = streamed.mlp_norm(layer), bridge.mlp_norm(layer)
        np.testing.assert_array_equal(ours_norm.scale, theirs_norm.scale)
        assert ours_norm.centres == theirs_norm.centres


def test_scans_through_both_loaders_are_identical(checkpoint, tmp_path):
    kind, folder = checkpoint
    settings = ScanSettings(top_k=5, projection=Projection(True, True, True))
    results = {}
    for loader in ("stream", "bridge"):
        engine = NeuronEngine(EngineOptions(model=str(folder), loader=loader, cache_dir=tmp_path / loader))
        results[loader] = [engine.layer(layer, settings) for layer in range(engine.info.n_layers)]
    for ours, theirs in zip(results["stream"], results["bridge"]):
        assert ours.to_bytes() == theirs.to_bytes()


def test_an_architecture_transformer_lens_does_not_know_gets_one_line(tmp_path, tiny_llama_dir):
    folder = tmp_path / "odd"
    folder.mkdir()
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    for file in [*tiny_llama_dir.glob("*.safetensors"), *tiny_llama_dir.glob("tokenizer*")]:
        (folder / file.name).write_bytes(file.read_bytes())
    done = run_cli(
        "scan", "--model", str(folder), "--loader", "stream", "--layers", "0", "-o", str(tmp_path / "o.jsonl")
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "NoSuchModelForCausalLM" in lines[0], done.stderr


def test_tensor_names_kept_in_the_cache_spare_the_transformer_lens_import(tmp_path):
    """A second open names its tensors from the cache: neither TransformerLens nor transformers is
    imported, and the tensors are the same; a damaged entry is asked for again."""
    import hashlib

    from engine.sources.tensor_names import names_key
    from engine.store.cache import ResultCache
    from engine.store.products import TENSOR_NAMES, ProductStore

    folder = write_hf_checkpoint(tmp_path / "gpt2", "gpt2", seed=3, max_shard_size="40KB")
    cache = ResultCache(tmp_path / "cache")
    names = ProductStore(cache, "fp").bound(TENSOR_NAMES)
    first = SafetensorsSource(folder, "fp", "gpt2", names)
    arrays = [first.unembed(), *(first.mlp_out(layer) for layer in range(first.info.n_layers))]
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
    cache.close()
    script = (
        "import hashlib, sys\n"
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from engine.store.cache import ResultCache\n"
        "from engine.store.products import TENSOR_NAMES, ProductStore\n"
        "from engine.sources.safetensors_source import SafetensorsSource\n"
        f"cache = ResultCache(Path({str(tmp_path / 'cache')!r}))\n"
        "names = ProductStore(cache, 'fp').bound(TENSOR_NAMES)\n"
        f"source = SafetensorsSource(Path({str(folder)!r}), 'fp', 'gpt2', names)\n"
        "arrays = [source.unembed(), *(source.mlp_out(l) for l in range(source.info.n_layers))]\n"
        "print(hashlib.sha256(b''.join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest())\n"
        "print(sorted(m for m in ('transformer_lens', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [digest, "[]"]

    cache = ResultCache(tmp_path / "cache")
    names = ProductStore(cache, "fp").bound(TENSOR_NAMES)
    key = names_key("GPT2LMHeadModel", (folder / "config.json").read_bytes())
    names.put({"top": "not a mapping"}, key)
    again = SafetensorsSource(folder, "fp", "gpt2", names)
    assert again.info == first.info
    stored = names.get(key)
    assert stored is not None and stored["mlp"]["out"] == "c_proj"


def test_reading_ahead_hands_out_the_same_layers_in_any_order(checkpoint):
    from engine.sources.prefetch import PrefetchingSource

    kind, folder = checkpoint
    plain = SafetensorsSource(folder, "fp", kind)
    ahead = PrefetchingSource(SafetensorsSource(folder, "fp", kind))
    try:
        for layer in (0, 1, 1, 0, 0):  # in order, repeated, and jumping back
            np.testing.assert_array_equal(ahead.mlp_out(layer), plain.mlp_out(layer))
        assert ahead.info == plain.info
        np.testing.assert_array_equal(ahead.unembed(), plain.unembed())
    finally:
        ahead.close()


def test_peak_memory_of_a_streamed_scan_does_not_grow_with_the_layers(tmp_path):
    """Scanning six layers peaks no higher than scanning two, give or take two layers' W_out: layers
    stream through (one scanned, one read ahead) rather than pile up.

    The children run with glibc's mmap threshold fixed at 1 MiB, so that what the engine frees goes
    back to the system at once and the peak measures what it holds; with the default dynamic
    threshold, heap fragmentation adds a varying amount on top (bounded; see bench/RESULTS.md).
    """
    import shutil

    import torch
    import transformers as t

    from tests.helpers.models import _byte_level_tokenizer, tiny_vocabulary

    d_model, d_mlp = 512, 4096
    config = t.LlamaConfig(
        vocab_size=4000,
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=7,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    folder = tmp_path / "deep"
    t.LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, max_shard_size="30MB")
    _byte_level_tokenizer(tiny_vocabulary(4000)).save_pretrained(folder)
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}

    def peak_kib(cache: Path, first: int, last: int) -> int:
        done = subprocess.run(
            [sys.executable, "-m", "tests.helpers.scan_peak_child", str(folder), str(cache)]
            + [str(first), str(last)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=root,
            env=environment,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    # Layer 0 first, so that both measured runs find the tensor names cached and import the same.
    peak_kib(tmp_path / "warm", 0, 0)
    shutil.copytree(tmp_path / "warm", tmp_path / "two")
    shutil.copytree(tmp_path / "warm", tmp_path / "six")
    two, six = peak_kib(tmp_path / "two", 1, 2), peak_kib(tmp_path / "six", 1, 6)
    w_out_kib = d_mlp * d_model * 4 // 1024  # float32, as scanned
    # Holding every layer would add four more layers' weights (> 4 x 24 MiB in float32).
    assert six - two < 2 * w_out_kib, (two, six)


@pytest.mark.parametrize("kind, dtype", [("llama", "bfloat16"), ("gpt2", "float16")])
def test_tensors_widened_slab_by_slab_equal_whole_ones(kind, dtype, tmp_path, monkeypatch):
    """bf16 and fp16 tensors are widened a few rows at a time; the result is the exact widening."""
    import torch
    from safetensors.torch import load_file

    import engine.sources.safetensors_source as module
    from tests.helpers.models import _byte_level_tokenizer, random_hf_model, tiny_vocabulary

    folder = tmp_path / kind
    random_hf_model(kind, seed=4).to(getattr(torch, dtype)).save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(300)).save_pretrained(folder)
    monkeypatch.setattr(module, "_SLAB_ELEMENTS", 7 * 32)  # a handful of rows per slab, a ragged end
    source = SafetensorsSource(folder, "fp", kind)
    stored = load_file(folder / "model.safetensors")
    name = "transformer.h.1.mlp.c_proj.weight" if kind == "gpt2" else "model.layers.1.mlp.down_proj.weight"
    assert stored[name].dtype == getattr(torch, dtype)
    widened = stored[name].float().numpy()
    np.testing.assert_array_equal(source.mlp_out(1), widened if kind == "gpt2" else widened.T)
    embedding = "transformer.wte.weight" if kind == "gpt2" else "lm_head.weight"
    np.testing.assert_array_equal(source.unembed(), stored[embedding].float().numpy().T)
    # W_E read from the file a few rows at a time, widened the same way.
    w_e = stored["transformer.wte.weight" if kind == "gpt2" else "model.embed_tokens.weight"].float().numpy()
    rows = source.embedding_rows()
    assert rows.shape == w_e.shape
    np.testing.assert_array_equal(rows.rows(3, 11), w_e[3:11])
    np.testing.assert_array_equal(rows.take(np.array([299, 0, 42])), w_e[[299, 0, 42]])


def test_the_input_side_holds_no_float32_copy_of_the_embedding(tmp_path):
    """An embedding much larger than the rest (a 64k vocabulary of width 512, bf16): a layer's input
    side reads it from the file a block at a time, so its peak over what the process held before
    stays well under the embedding's float32 size (125 MiB), which holding it whole would add
    (and a float64 copy for the norms, twice that)."""
    import torch
    import transformers as t

    from tests.helpers.models import _byte_level_tokenizer, tiny_vocabulary

    vocab, d_model = 64000, 512
    config = t.LlamaConfig(
        vocab_size=vocab,
        hidden_size=d_model,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    folder = tmp_path / "wide"
    t.LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    _byte_level_tokenizer(tiny_vocabulary(vocab)).save_pretrained(folder)
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # freed memory goes back at once
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.inputs_peak_child", str(folder), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    before, peak = map(int, done.stdout.split()[-2:])
    float32_kib = vocab * d_model * 4 // 1024
    assert peak - before < float32_kib // 2, (before, peak)
