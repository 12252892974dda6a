"""Choose the projection flags and the lens: results come from the cache when that setting was
scanned before. Space ticks the box under the cursor, + ticks all three (Gurnee et al.'s setting),
- unticks them (raw); g and r are the list's go-to and reverse keys, so they mean nothing here."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Checkbox, Label

from engine.settings import Projection
from tui.screens.dialog import Dialog

FLAGS = [
    ("fold_final_norm", "fold the final norm's weight into W_U"),
    ("center_unembed", "center W_U (subtract each row's mean over the vocabulary)"),
    ("cosine", "cosine: divide by |W_out[i]| and each W_U column's norm"),
]


class FlagBox(Checkbox):
    """A checkbox whose state reads without colour: X when on, blank when off."""

    # Textual's class attribute, read at each render: as a property it follows the value.
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802
        return "X" if self.value else " "


Reading = tuple[Projection, bool]  # the flags, and whether to read through the Jacobian lens


class ProjectionScreen(Dialog[Reading | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel-projection"),
        Binding("enter", "apply", "Apply", priority=True, id="apply-projection"),  # before the box's own
        Binding("plus", "gurnee", "Tick all three (Gurnee et al.)", key_display="+", id="gurnee"),
        Binding("minus", "raw", "Untick all (raw)", key_display="-", id="raw"),
    ]

    def __init__(
        self, current: Projection, jacobian: bool = False, lens_description: str | None = None
    ) -> None:
        """``lens_description``: the Jacobian lens at hand, None when this model has none."""
        super().__init__()
        self.current = current
        self.jacobian = jacobian
        self.lens_description = lens_description

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Projection of W_out[i] onto the vocabulary"), id="projection-title")
            for flag, label in FLAGS:
                yield FlagBox(Text(label), value=getattr(self.current, flag), id=flag)
            if self.lens_description is not None:
                lens_label = Text("read through the Jacobian lens: J_l w")
                yield FlagBox(lens_label, value=self.jacobian, id="jacobian")
                yield Label(Text(self.lens_description), id="lens-description", classes="dialog-hint")
            else:
                yield Label(
                    "logit lens: no Jacobian lens for this model (neuron-tui lens fit)", classes="dialog-hint"
                )
            yield Label(
                "space toggles · + all three · - none · enter applies · esc cancels",
                id="projection-hint",
                classes="dialog-hint",
            )

    def _chosen(self) -> Reading:
        projection = Projection(**{flag: self.query_one(f"#{flag}", Checkbox).value for flag, _ in FLAGS})
        jacobian = self.lens_description is not None and self.query_one("#jacobian", Checkbox).value
        return projection, jacobian

    def action_apply(self) -> None:
        self.dismiss(self._chosen())

    def _tick(self, on: bool) -> None:
        """Set the boxes; Enter applies them, as the dialog says."""
        for flag, _ in FLAGS:
            self.query_one(f"#{flag}", Checkbox).value = on

    def action_gurnee(self) -> None:
        self._tick(True)

    def action_raw(self) -> None:
        self._tick(False)

    def action_cancel(self) -> None:
        self.dismiss(None)
