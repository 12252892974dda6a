"""Damaged or incomplete input gets one line and exit 2, before heavy work; nothing gets stuck:
truncated safetensors, a checkpoint without a tokenizer, a config without "architectures", a
corpus larger than memory, an unusable cache, and the smaller refusals found by trying."""

from __future__ import annotations

import json
import shutil
import tracemalloc

import numpy as np
import pytest

from engine.errors import UserError
from engine.neuron_engine import EngineOptions, NeuronEngine
from tests.helpers.app import make_app, settle, wait_for
from tests.helpers.cli import run_cli
from tests.helpers.terminal import Terminal


def _copy(source, destination):
    shutil.copytree(source, destination)
    return destination


def _one_line(done, *expected: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("keep", [0.5, 100], ids=["half", "100-bytes"])
def test_a_truncated_safetensors_file_gets_one_line(keep, tiny_llama_dir, tmp_path):
    folder = _copy(tiny_llama_dir, tmp_path / "cut")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    done = run_cli("scan", "--model", str(folder), "--layers", "0", "-o", str(tmp_path / "o.jsonl"))
    line = _one_line(done, "model.safetensors")
    assert "truncated" in line or "ends inside its header" in line
    assert not (tmp_path / "o.jsonl").exists()


def test_a_checkpoint_without_tokenizer_files_gets_one_line_and_the_explorer_does_not_open(
    tiny_llama_dir, tmp_path
):
    folder = _copy(tiny_llama_dir, tmp_path / "no-tokenizer")
    for file in folder.glob("tokenizer*"):
        file.unlink()
    done = run_cli("scan", "--model", str(folder), "--layers", "0", "-o", str(tmp_path / "o.jsonl"))
    _one_line(done, "no tokenizer files", str(folder))
    terminal = Terminal(["--model", str(folder), "--cache-dir", str(tmp_path / "cache")])
    try:
        assert terminal.wait() == 2
    finally:
        terminal.kill()
    assert b"no tokenizer files" in terminal.output and b"loading model" not in terminal.output


def test_a_config_without_architectures_is_streamed_by_its_model_type(tiny_llama_dir, tmp_path):
    from engine.sources.safetensors_source import SafetensorsSource

    folder = _copy(tiny_llama_dir, tmp_path / "no-architectures")
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    engine = NeuronEngine(EngineOptions(model=str(folder), device="cpu", cache_dir=tmp_path / "cache"))
    source = engine._ensure_source()
    assert isinstance(getattr(source, "_source", source), SafetensorsSource), type(source)
    assert engine.warnings == []
    engine.close()


def test_falling_back_to_the_bridge_says_why_once(tiny_llama_dir, tmp_path, monkeypatch):
    from engine.sources import resolve, safetensors_source
    from engine.sources.bridge_source import BridgeSource

    def unnamed(*_args, **_kwargs):
        raise UserError("TransformerLens has no adapter for TestModel")

    monkeypatch.setattr(safetensors_source, "SafetensorsSource", unnamed)
    said: list[str] = []
    location = resolve.locate_model(str(tiny_llama_dir))
    source = resolve.open_source(location, "auto", None, said.append)
    assert isinstance(source, BridgeSource)
    assert len(said) == 1 and "cannot be streamed" in said[0] and "no adapter for TestModel" in said[0]


def test_a_corpus_larger_than_memory_is_read_as_a_stream_and_the_cap_stops_the_reading(tmp_path):
    """A 40 MB single-document .txt with a 2,000-token cap: the corpus is never held whole (the
    peak of Python allocations stays far below the file's size), no piece handed to the tokenizer
    exceeds the piece size, and the reading stops a piece or two after the cap."""
    from engine.activations import corpus as corpus_module
    from engine.activations import documents as pieces_module
    from engine.activations.windows import tokenize_corpus

    line = "the quick brown fox jumps over the lazy dog, again and again\n"
    path = tmp_path / "big.txt"
    with path.open("w") as handle:
        for _ in range(40_000_000 // len(line)):
            handle.write(line)
    seen: list[int] = []

    def encode(text: str) -> list[int]:
        seen.append(len(text))
        return [ord(c) % 250 for c in text[::4]]

    tracemalloc.start()
    try:
        corpus = corpus_module.load_corpus(str(path))
        tokenized = tokenize_corpus(corpus, encode, 256, 2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tokenized.n_positions == 2000
    assert max(seen) <= pieces_module.PIECE_CHARACTERS and len(seen) <= 2
    assert peak < 16 * pieces_module.PIECE_CHARACTERS, f"peak {peak / 2**20:.1f} MiB"
    assert corpus.characters == path.stat().st_size and corpus.n_documents == 1
    # The hash is the content's, as if the document had been held whole.
    text = path.read_text()
    assert corpus.content_hash == pieces_module.Corpus("same", (text,)).content_hash


def test_pieces_of_a_long_document_tokenize_as_the_whole_for_a_tokenizer_that_splits_at_seams():
    """With a tokenizer that works character by character, cutting documents into pieces changes
    nothing: positions, next tokens, windows and the cap are those of the whole documents."""
    from engine.activations import documents as pieces_module
    from engine.activations.windows import tokenize_corpus

    rng = np.random.default_rng(5)
    encode = lambda text: [ord(c) for c in text]  # noqa: E731
    for trial in range(60):
        documents = tuple(
            "".join(rng.choice(list("ab c\n"), size=int(rng.integers(0, 80)))) for _ in range(4)
        )
        if not any(d.strip() for d in documents):
            continue
        cap = None if trial % 3 == 0 else int(rng.integers(1, 200))
        whole = tokenize_corpus(pieces_module.Corpus("w", documents), encode, 7, cap)
        old_size = pieces_module.PIECE_CHARACTERS
        pieces_module.PIECE_CHARACTERS = int(rng.integers(4, 20))
        try:
            pieces = tokenize_corpus(pieces_module.Corpus("p", documents), encode, 7, cap)
        finally:
            pieces_module.PIECE_CHARACTERS = old_size
        for name in ("token_ids", "doc", "position", "next_ids"):
            np.testing.assert_array_equal(getattr(pieces, name), getattr(whole, name), err_msg=name)
        assert pieces.windows == whole.windows


async def test_an_unusable_cache_is_said_inside_the_explorer(tiny_gguf, tmp_path):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("a file where the cache folder should be")
    app = make_app(tiny_gguf, not_a_folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        messages = [str(n.message) for n in app._notifications]
        assert any("running without the cache" in m for m in messages), messages


def test_a_cache_write_failure_is_told_once_and_says_results_are_not_kept(tmp_path, monkeypatch, caplog):
    from engine.store.cache import ResultCache

    cache = ResultCache(tmp_path / "cache")

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache._cache, "set", full)
    with caplog.at_level("WARNING"):
        assert not cache.set("a", b"x") and not cache.set("b", b"y")
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1 and "not being kept" in told[0]
    cache.close()


def test_an_explorer_layer_out_of_range_exits_2_before_the_screen(tiny_gguf, tmp_path):
    terminal = Terminal(["--model", str(tiny_gguf), "--layer", "99", "--cache-dir", str(tmp_path / "c")])
    try:
        assert terminal.wait() == 2
    finally:
        terminal.kill()
    assert b"layer 99 is out of range" in terminal.output


def test_version_and_the_bundled_models_quantisation_are_said():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("neuron-tui ")
    assert "Q4_1" in run_cli("--help").stdout


def test_the_filter_takes_the_words_the_screen_shows():
    from tui.filtering import parse_filter

    assert [str(c) for c in parse_filter("class=pred, kurt>10")] == ["class=prediction", "kurtosis>10.0"]
    assert [str(c) for c in parse_filter("class=supp, null-z>3, max-dot>=1")] == [
        "class=suppression",
        "null_z>3.0",
        "max_dot>=1.0",
    ]


def test_invisible_spaces_show_as_escapes():
    from engine.data.tokens import display_token

    assert display_token("\u00a0") == "\\xa0"
    assert display_token("a\u2009b") == "a\\u2009b"
    assert display_token(" a") == "␣a"


def test_the_status_line_keeps_the_projection_at_80_columns():
    from tui.widgets.status_bar import Status, status_text

    status = Status(
        model="SmolLM2-135M-Instruct-Q4_1",
        device="cpu",
        projection="fold+center+cosine",
        projection_short="fold+ctr+cos",
        layer=29,
        last_layer=29,
        marked=3,
        activity="corpus pass 12,000/50,000 tokens · 80/s · 8 min left",
        sort="max-dot ↓",
        filter_text="filter kurtosis>10.0",
    )
    for width in (60, 80):
        assert "fold+ctr+cos" in status_text(status, width).plain
    assert "fold+center+cosine" in status_text(status, 200).plain


async def test_a_warm_start_reads_the_null_baseline_and_never_says_computing(
    tiny_gguf, tmp_path, monkeypatch
):
    from tui.screens.main import MainScreen

    first = make_app(tiny_gguf, tmp_path / "c")
    async with first.run_test(size=(120, 40)) as pilot:
        await settle(pilot, first)
    said: list[str] = []
    original = MainScreen.on_activity

    def record(screen, message) -> None:
        said.append(message.text)
        original(screen, message)

    monkeypatch.setattr(MainScreen, "on_activity", record)
    again = make_app(tiny_gguf, tmp_path / "c")
    async with again.run_test(size=(120, 40)) as pilot:
        await settle(pilot, again)
    assert "reading the null baseline" in said and "computing the null baseline" not in said


async def test_the_detail_scrolls_with_the_list_keys(tiny_gguf, tmp_path):
    from textual.containers import VerticalScroll

    from tui.screens.detail import NeuronDetailScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NeuronDetailScreen))
        panel = app.screen.query_one("#detail-tokens", VerticalScroll)
        await wait_for(pilot, lambda: panel.max_scroll_y > 2)
        await pilot.press("j", "j")
        await wait_for(pilot, lambda: panel.scroll_y == 2)
        await pilot.press("end")
        await wait_for(pilot, lambda: panel.scroll_y == panel.max_scroll_y)
        await pilot.press("k")
        await wait_for(pilot, lambda: panel.scroll_y == panel.max_scroll_y - 1)
        await pilot.press("home")
        await wait_for(pilot, lambda: panel.scroll_y == 0)


async def test_notes_are_on_screen_in_the_collection_at_80_columns(tiny_gguf, tmp_path):
    from tests.helpers.app import answer_prompt
    from tui.screens.collection import CollectionScreen

    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await answer_prompt(pilot, app, "n", "pronouns")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, CollectionScreen))
        await wait_for(pilot, lambda: app.screen.loaded)
        await pilot.pause(0.2)
        assert "pronouns" in app.export_screenshot()


async def test_warnings_raised_while_the_explorer_runs_show_on_screen_not_on_stderr(tiny_gguf, tmp_path):
    """Logging is the one channel; while the app runs no handler writes to the real stderr."""
    import logging

    app = make_app(tiny_gguf, tmp_path / "c")
    before = list(logging.getLogger().handlers)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert logging.getLogger().handlers == [app.log_handler]
        logging.getLogger("engine.store.cache").warning("warning: the disk is full (a test)")
        await wait_for(pilot, lambda: any("disk is full" in str(n.message) for n in app._notifications))
    assert logging.getLogger().handlers == before


def test_a_damaged_cache_index_is_set_aside_and_a_fresh_one_started(tiny_gguf, tmp_path):
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "cache.db").write_bytes(b"this is not a database\x00" * 40)
    common = ("scan", "--model", str(tiny_gguf), "--cache-dir", str(cache), "--layers", "0")
    first = run_cli(*common, "--output", str(tmp_path / "a.jsonl"))
    assert first.returncode == 0, first.stderr
    warnings = [line for line in first.stderr.splitlines() if line.startswith("warning")]
    (aside,) = cache.glob("cache.db.damaged-*")
    assert warnings == [
        f"warning: the cache index {cache / 'cache.db'} was damaged (file is not a database): it is set "
        f"aside as {aside} and a fresh index started; results are computed again as they are needed"
    ], first.stderr
    assert aside.read_bytes() == b"this is not a database\x00" * 40  # the old index, untouched
    second = run_cli(*common, "--output", str(tmp_path / "b.jsonl"))
    assert second.returncode == 0 and "warning" not in second.stderr, second.stderr
    assert "from cache" in second.stderr  # the fresh index keeps results again
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
