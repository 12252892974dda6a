"""Choose the projection flags: results come from the cache when that setting was scanned before."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Label

from engine.settings import Projection

FLAGS = [
    ("fold_final_norm", "fold the final norm's weight into W_U"),
    ("center_unembed", "center W_U (subtract each row's mean over the vocabulary)"),
    ("cosine", "cosine: divide by |W_out[i]| and each W_U column's norm"),
]


class ProjectionScreen(ModalScreen[Projection | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel-projection"),
        Binding("enter", "apply", "Apply", id="apply-projection"),
        Binding("g", "gurnee", "All three (Gurnee et al.)", id="gurnee"),
        Binding("r", "raw", "Raw (none)", id="raw"),
    ]

    DEFAULT_CSS = """
    ProjectionScreen { align: center middle; }
    ProjectionScreen > Vertical {
        width: 70;
        max-width: 95%;
        height: auto;
        border: thick $accent;
        background: $surface;
        padding: 1 2;
    }
    ProjectionScreen #projection-hint { color: $text-muted; }
    """

    def __init__(self, current: Projection) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Projection of W_out[i] onto the vocabulary", id="projection-title")
            for flag, label in FLAGS:
                yield Checkbox(label, value=getattr(self.current, flag), id=flag)
            yield Label(
                "space toggles · enter applies · g all three · r raw · esc cancels", id="projection-hint"
            )

    def _chosen(self) -> Projection:
        return Projection(**{flag: self.query_one(f"#{flag}", Checkbox).value for flag, _ in FLAGS})

    def action_apply(self) -> None:
        self.dismiss(self._chosen())

    def action_gurnee(self) -> None:
        self.dismiss(Projection(True, True, True))

    def action_raw(self) -> None:
        self.dismiss(Projection())

    def action_cancel(self) -> None:
        self.dismiss(None)
