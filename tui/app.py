"""The explorer's app: the engine, the signals that end it, and the keys that work in every view.

Everything about the main view (its layout, keys, workers) lives in ``tui.screens.main``; what the
explorer knows lives in a plain ``ExplorerState``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget

from engine.neuron_engine import AnyCorpus, NeuronEngine
from engine.settings import ActivationSettings, ScanSettings
from tui.key_order import KeyOrder, keys_typed, read_escape_and_letter_apart
from tui.messages import ExplorerFailed, MarksChanged
from tui.neuron_ref import routes_through_experts
from tui.notify_log import NotifyHandler
from tui.screens.detail import NeuronDetailScreen
from tui.screens.main import MainScreen
from tui.screens.main.layer_view import LayerView
from tui.state import ExplorerState
from tui.widgets.layer_picker import LayerPicker
from tui.widgets.neuron_list import NeuronList

HELP_INTRO = (
    "neuron-tui projects every MLP neuron's output weights onto the unembedding (W_out[i] @ W_U).\n"
    "max-dot = max |dot| over the vocabulary; top tokens are ranked by |dot|: "
    "+ promotes (green), − suppresses (red).\n"
    "null-z compares a neuron's max-dot per unit norm with random directions; "
    "kurt/class follow Gurnee et al. 2024.\n"
    "Tab moves between the layer picker and the neuron list. Marks (space marks and moves to the next "
    "row) and notes (n) form the collection (m), kept across layers and restarts and shared with other "
    "explorers of the model; u undoes the last change; unmarking keeps the note; e exports it.\n"
    "forms = distinct words among its promoted tokens (1-2: one word), coh-z = how alike they are in "
    "the unembedding against random tokens (> 3: a concept); the detail adds what drives it (reads ←).\n"
    "Where neurons fire on text: on the main screen A runs a corpus pass you steer (this layer or "
    "all, a token cap: the first 50,000 tokens on a CPU, the whole corpus on a GPU, and the corpus: "
    "wikipedia-vital by default; A again stops it); in the detail, A reads the corpus for that layer "
    "only (examples fill in as it reads; A again stops, what was read is kept and the next A "
    "resumes). Each neuron has two poles: + (activation > 0) raises its "
    "promoted tokens, − (< 0) its suppressed ones. lift / nlift (how often a pole fires right before "
    "one of its tokens, against chance) join the list; each pole's top examples and the four gate/up "
    "sign cases the detail. t probes a sentence you type, ranking neurons by their activation "
    "against their own scale (in the detail: that neuron on every token; "
    "position 0 and special tokens are marked *, on another scale). Space and n mark and note the "
    "neuron shown in the detail, the probes, the token search and coverage too.\n"
    "d switches the list between the model's neurons and the features of a dictionary (a sparse "
    "autoencoder or transcoder, given with --dictionary PATH).\n"
    "Escape (or ? or q) closes this help; q on the main screen quits, elsewhere it goes back.\n"
)

DICTIONARY_HELP = (
    "A dictionary is open: d lists its features (L29/F812, read against the vocabulary as neurons "
    "are: their decoder rows) or the neurons, in the layers it reads; marks of features go to the "
    "dictionary's own collection. Go to takes L29/F812 or F812 (and L29/N1135 for a neuron). A "
    "feature's detail names its dictionary and its closest neurons by |cosine| of their write "
    "directions, a neuron's detail its closest features: 1-5 open one. All layers (a) sets, per layer, "
    "the neurons and features that look like one token side by side. Why this token (w) and "
    "ablation (x) read neurons only.\n"
)


EXPERTS_HELP = (
    "This model routes its MLPs through experts: a neuron is L12/E5/N301 (S: the shared expert). "
    "In a layer of experts the Experts picker (under the layers) lists all experts or one; } and { "
    "go to the next and previous expert on the main screen, and the list and histogram show that "
    "expert's neurons. Go to takes L12/E5/N301 or E5/N301. After a corpus pass the picker shows each "
    "expert's routed share, and density counts the positions routed to its expert.\n"
)


def _bindings(declared: Iterable[BindingType]) -> list[Binding]:
    """A class's bindings as ``Binding`` objects (Textual also takes tuples)."""
    return [b if isinstance(b, Binding) else Binding(*b) for b in declared]


EXIT_CODES = {signal.SIGHUP: 129, signal.SIGINT: 130, signal.SIGTERM: 143}


class NeuronApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    TITLE = "neuron-tui"

    # Not priority bindings: a text field typing "[" keeps the character.
    BINDINGS = [
        Binding("right_square_bracket", "next_layer", "Next layer", key_display="]", id="next-layer"),
        Binding("left_square_bracket", "previous_layer", "Prev layer", key_display="[", id="previous-layer"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="interrupt"),
    ]

    def __init__(
        self,
        engine: NeuronEngine,
        settings: ScanSettings | None = None,
        start_layer: int | None = None,
        export_dir: Path | None = None,
        handle_signals: bool = False,
        on_exit: Callable[[int], None] | None = None,
        activation: ActivationSettings | None = None,
        corpus: AnyCorpus | None = None,
        against: NeuronEngine | None = None,
    ) -> None:
        """``against``: the engine of another checkpoint to compare with, neuron by neuron."""
        super().__init__()
        self.engine = engine
        self.state = ExplorerState(settings or ScanSettings())
        if activation is not None:
            self.state.activation = activation
        if corpus is not None:
            self.state.corpus, self.state.corpus_spec = corpus, corpus.name
        self.handle_signals = handle_signals
        self.on_exit = on_exit  # told the exit code as soon as an exit is asked for (the watchdog)
        self.fatal_error: str | None = None  # set when the app ends because the model cannot be used
        self.fatal_exception: BaseException | None = None  # and the unexpected error behind it, if any
        self.main = MainScreen(engine, self.state, start_layer, export_dir or Path.cwd(), against)
        self.log_handler = NotifyHandler(self)
        self.key_order = KeyOrder(self)
        read_escape_and_letter_apart()

    def get_default_screen(self) -> Screen:
        return self.main

    def on_mount(self) -> None:
        self.log_handler.install()  # warnings from now on: notifications, not lines under the screen
        if self.handle_signals:
            self._exit_on_signals()

    def on_unmount(self) -> None:
        self.log_handler.remove()

    def exit(self, result=None, return_code: int = 0, message=None) -> None:
        if self.on_exit is not None:
            self.on_exit(return_code)
        super().exit(result, return_code, message)

    def on_explorer_failed(self, message: ExplorerFailed) -> None:
        """End the app because nothing can be shown (the model cannot be opened): exit 2, and the
        command line prints the text once the terminal is restored; an unexpected exception behind
        it is reported as an internal error (exit 1)."""
        self.fatal_error, self.fatal_exception = message.text, message.error
        self.exit(None, 1 if message.error is not None else 2)

    async def on_event(self, event: events.Event) -> None:
        """Keys as they arrive are read one at a time, each to the end (tui.key_order)."""
        if not isinstance(event, events.Key) or event.is_forwarded:
            await super().on_event(event)
            return
        for key in keys_typed(event):
            if not self.key_order.admit(key):
                continue
            target = self.focused or self.screen
            await super().on_event(key)
            self.key_order.handled(key, target)

    def on_marks_changed(self, message: MarksChanged) -> None:
        """A view over the main screen marked or noted a neuron: the list shows it at once."""
        self.main.on_marks_changed(message)

    def _exit_on_signals(self) -> None:
        """A dropped SSH connection (SIGHUP), Ctrl-C sent as a signal (SIGINT) or SIGTERM: leave as
        'q' does. Workers stop at their next block; the cache only ever holds whole layers."""
        loop = asyncio.get_running_loop()
        for signum, code in EXIT_CODES.items():
            loop.add_signal_handler(signum, partial(self.exit, None, code))

    # --- keys that work everywhere ----------------------------------------------------------
    def _step_layer(self, delta: int) -> None:
        if isinstance(self.screen, NeuronDetailScreen):
            self.pop_screen()  # the detail shows one neuron of the old layer
        self.main.step_layer(delta)

    def action_next_layer(self) -> None:
        self._step_layer(1)

    def action_previous_layer(self) -> None:
        self._step_layer(-1)

    def on_neuron_detail_screen_moved(self, message: NeuronDetailScreen.Moved) -> None:
        self.main.follow_neuron(message.neuron)

    def binding_groups(self) -> list[tuple[str, list[Binding]]]:
        """Every key, grouped by where it works; the help and the command palette read this."""
        from tui.screens.ablation import AblationScreen
        from tui.screens.all_layers import AllLayersScreen
        from tui.screens.collection import CollectionScreen
        from tui.screens.coverage import CoverageScreen
        from tui.screens.neuron_probe import NeuronProbeScreen
        from tui.screens.pass_dialog import PassDialog
        from tui.screens.projection import ProjectionScreen
        from tui.screens.text_probe import TextProbeScreen
        from tui.screens.token_search import TokenSearchScreen
        from tui.screens.why_token import WhyTokenScreen
        from tui.widgets.tables import ROW_KEYS, VIM_KEYS

        return [
            ("anywhere", _bindings(self.BINDINGS)),
            ("main view", _bindings(MainScreen.BINDINGS)),
            ("layer view", _bindings(LayerView.BINDINGS)),
            ("neuron list", _bindings(NeuronList.BINDINGS)),
            ("layer picker", _bindings(LayerPicker.BINDINGS)),
            ("neuron detail", _bindings(NeuronDetailScreen.BINDINGS)),
            ("collection (m)", _bindings(CollectionScreen.BINDINGS)),
            ("all layers (a)", _bindings(AllLayersScreen.BINDINGS)),
            ("token search (/)", _bindings(TokenSearchScreen.BINDINGS)),
            ("coverage (c)", _bindings(CoverageScreen.BINDINGS)),
            ("projection (p)", _bindings(ProjectionScreen.BINDINGS)),
            ("text probe (t)", _bindings(TextProbeScreen.BINDINGS)),
            ("why this token (w in the text probe)", _bindings(WhyTokenScreen.BINDINGS)),
            ("one neuron on text (t in the detail)", _bindings(NeuronProbeScreen.BINDINGS)),
            ("one neuron ablated on text (x in the detail)", _bindings(AblationScreen.BINDINGS)),
            ("corpus pass dialog (A)", _bindings(PassDialog.BINDINGS)),
            ("every table", _bindings([*VIM_KEYS, *ROW_KEYS])),
        ]

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            cache = self.engine.cache_directory
            where = f"cache: {cache}" if cache else "cache: off (results are not kept)"
            intro = HELP_INTRO + (EXPERTS_HELP if routes_through_experts() else "")
            intro += DICTIONARY_HELP if self.state.dictionary is not None else ""
            if self.no_color:  # the colours are not shown: do not name them
                intro = intro.replace(" (green)", "").replace(" (red)", "")
            self.push_screen(HelpScreen(self.binding_groups(), intro + where + "\n"))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        targets: dict[str, App | Widget] = {
            "anywhere": self,
            "main view": self.main,
            "layer view": self.main.layer_view,
            "neuron list": self.main.query_one(NeuronList),
        }
        for where, bindings in self.binding_groups():
            if where not in targets:
                continue
            for binding in bindings:
                if binding.description and binding.action != "quit":
                    key = binding.key_display or binding.key
                    action = partial(targets[where].run_action, binding.action)
                    yield SystemCommand(binding.description, f"key {key} ({where})", action)
