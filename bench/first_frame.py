"""Launch to first full frame, headless: the explorer on a warm cache, or a bare Textual app."""

from __future__ import annotations

import sys


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
    from engine.session import EngineOptions, NeuronEngine
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


if __name__ == "__main__":
    bare() if sys.argv[1] == "bare" else explorer(sys.argv[2])
