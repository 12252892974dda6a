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
    """Start the explorer and leave at the first frame that shows a layer (the message the layer
    view sends when it shows one reaches the app)."""
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from tui.app import NeuronApp
    from tui.screens.main.layer_view import LayerView

    shown: list[int] = []

    class FirstFrame(NeuronApp):
        def on_layer_view_shown(self, message: LayerView.Shown) -> None:
            shown.append(message.neurons.layer)
            self.call_after_refresh(self.exit)

    engine = NeuronEngine(EngineOptions(model=None, device="cpu", cache_dir=cache_dir))
    FirstFrame(engine).run(headless=True, size=(120, 40))
    if not shown:
        sys.exit("the explorer exited before showing a layer")
    print(f"first_frame_layer={shown[0]} torch_imported={'torch' in sys.modules}", file=sys.stderr)


def detail(cache_dir: str) -> None:
    """Open the first listed neuron's detail once the layer shows; print the seconds to its frame."""
    from textual.screen import Screen

    from engine.neuron_engine import EngineOptions, NeuronEngine
    from tui.app import NeuronApp
    from tui.screens.detail import NeuronDetailScreen
    from tui.screens.main.layer_view import LayerView

    timings: dict[str, float] = {}

    class DetailFrame(NeuronApp):
        def on_mount(self) -> None:
            super().on_mount()
            self.screen_change_signal.subscribe(self, self.screen_changed)

        def on_layer_view_shown(self, message: LayerView.Shown) -> None:
            if "opened" not in timings:
                timings["opened"] = 0.0
                self.set_timer(0.5, self.open_detail)  # as a person would: a moment after the layer shows

        def open_detail(self) -> None:
            timings["opened"] = time.perf_counter()
            self.simulate_key("enter")

        def screen_changed(self, screen: Screen) -> None:
            if isinstance(screen, NeuronDetailScreen):
                screen.call_after_refresh(self.drawn)

        def drawn(self) -> None:
            timings["drawn"] = time.perf_counter()
            self.exit()

    engine = NeuronEngine(EngineOptions(model=None, device="cpu", cache_dir=cache_dir))
    DetailFrame(engine).run(headless=True, size=(120, 40))
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
