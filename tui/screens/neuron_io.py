"""A neuron's input side beside its output side, in the detail: which tokens' embeddings drive
each of its input rows (reads ←) and which tokens its output row raises and lowers (writes →),
with the rows' cosines and the Gerstner & Schütze IO class (engine.data.inputs)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from engine.data.inputs import IO_CLASSES, LayerInputs
from engine.data.results import LayerResult
from engine.data.tokens import Vocabulary
from tui.render import token_label

SHOWN = 6
# A line is 7 cells of row name, then PER_LINE tokens of CELL cells and a value of up to 6 (+16.81),
# each after one space: 61 cells, inside the detail's left panel at every width.
PER_LINE = 3
CELL = 10
INDENT = 7


def _cell(token: str) -> str:
    """The token in exactly CELL terminal cells (a wide character takes two)."""
    label = token_label(token, CELL)
    while cell_len(label) > CELL:
        label = label[:-2] + "…"
    return label + " " * (CELL - cell_len(label))


def _tokens(text: Text, ids, values, vocab: Vocabulary, style: str) -> None:
    """Up to SHOWN tokens with their values, PER_LINE to a line (later lines indented)."""
    for rank, (token_id, value) in enumerate(list(zip(ids, values))[:SHOWN]):
        if rank and rank % PER_LINE == 0:
            text.append("\n" + " " * INDENT)
        text.append(_cell(vocab.text(int(token_id))), style=style)
        text.append(f" {value:>+6.2f} ", style="dim")


def reads_writes_view(
    inputs: LayerInputs | None, result: LayerResult, neuron: int, vocab: Vocabulary
) -> Text:
    text = Text()
    if inputs is None:
        text.append("reads ←: reading the input weights…", style="dim")
        return text
    text.append("reads ← ", style="bold")
    text.append("(tokens whose embedding drives each row; cosine)\n", style="dim")
    for row, name in enumerate(inputs.rows):
        text.append(f"{name:>4} + ", style="bold")
        _tokens(text, inputs.plus_ids[row, neuron], inputs.plus_cos[row, neuron], vocab, "green")
        text.append(f"\n{'':>4} − ", style="bold")
        _tokens(text, inputs.minus_ids[row, neuron], inputs.minus_cos[row, neuron], vocab, "red")
        text.append("\n")
    text.append("writes → ", style="bold")
    text.append("(tokens its output row raises and lowers; dot)\n", style="dim")
    text.append(f"{'out':>4} + ", style="bold")
    _tokens(text, result.promote_ids[neuron], result.promote_dots[neuron], vocab, "green")
    text.append(f"\n{'':>4} − ", style="bold")
    _tokens(text, result.suppress_ids[neuron], result.suppress_dots[neuron], vocab, "red")
    # One line for the rows against the output, one for gate against up: each fits the panel.
    cosines = " · ".join(
        f"cos({name}, out) {inputs.cos_out[row, neuron]:+.2f}" for row, name in enumerate(inputs.rows)
    )
    if inputs.gated:
        cosines += f"\ncos(gate, up) {inputs.cos_gate_up[neuron]:+.2f}"
    text.append(f"\n{cosines}\nIO class: ")
    text.append(IO_CLASSES[int(inputs.io_class[neuron])], style="bold")
    text.append(" (Gerstner & Schütze)\n", style="dim")
    return text
