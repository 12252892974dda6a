"""Launch to first full frame, headless: the explorer on a warm cache, or a bare Textual app; and the
time from opening a neuron's detail to its first full frame, on a warm cache."""

from __future__ import annotations

import sys
import time


def bare() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Static

    class Bare(App):
        def compose(self) -> ComposeResult:
            yield Static("hello")
            yield Footer()

        def on_mount(self) -> None:
            self.call_after_refresh(self.exit)

    Bare().run(headless=True, size=(120, 40))


def explorer(cache_dir: str) -> None:
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from tui.app import NeuronApp

    shown: list[int] = []
    engine = NeuronEngine(EngineOptions(model=None, device="cpu", cache_dir=cache_dir))
    app = NeuronApp(engine)
    show_result = app.main._show_result

    def show_and_exit(result) -> None:
        show_result(result)
        shown.append(result.layer)
        app.call_after_refresh(app.exit)

    app.main._show_result = show_and_exit
    app.run(headless=True, size=(120, 40))
    if not shown:
        sys.exit("the explorer exited before showing a layer")
    print(f"first_frame_layer={shown[0]} torch_imported={'torch' in sys.modules}", file=sys.stderr)


def detail(cache_dir: str) -> None:
    """Open the first listed neuron's detail once the layer shows; print the seconds to its frame."""
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from tui.app import NeuronApp
    from tui.screens.detail import NeuronDetailScreen
    from tui.widgets.neuron_list import NeuronList

    engine = NeuronEngine(EngineOptions(model=None, device="cpu", cache_dir=cache_dir))
    app = NeuronApp(engine)
    timings: dict[str, float] = {}
    show_result, on_mount = app.main._show_result, NeuronDetailScreen.on_mount

    def open_detail() -> None:
        timings["opened"] = time.perf_counter()
        listing = app.main.query_one(NeuronList)
        listing.post_message(NeuronList.Selected(listing.current_neuron))

    def show_and_open(result) -> None:
        show_result(result)
        if "opened" not in timings:
            timings["opened"] = 0.0
            app.set_timer(0.5, open_detail)  # as a person would: a moment after the layer shows

    def mounted(screen) -> None:
        on_mount(screen)

        def drawn() -> None:
            timings["drawn"] = time.perf_counter()
            app.exit()

        screen.call_after_refresh(drawn)

    app.main._show_result = show_and_open
    NeuronDetailScreen.on_mount = mounted
    app.run(headless=True, size=(120, 40))
    if "drawn" not in timings:
        sys.exit("the explorer exited before the detail showed")
    print(
        f"detail_open_s={timings['drawn'] - timings['opened']:.4f} model_loaded={engine.source_loaded} "
        f"torch_imported={'torch' in sys.modules}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    {
        "bare": lambda: bare(),
        "explorer": lambda: explorer(sys.argv[2]),
        "detail": lambda: detail(sys.argv[2]),
    }[sys.argv[1]]()
