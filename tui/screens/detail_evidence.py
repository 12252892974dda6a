"""Where a neuron fires on text, as the detail shows it: each pole's density, lift, direct effect
and top examples (a bar as long as |activation|, readable without colour), then the four gate/up
sign cases, under a heading that says how much of the corpus the evidence has read."""

from __future__ import annotations

import numpy as np
from rich.text import Text

from engine.data.evidence import EvidenceReading
from engine.data.tokens import Vocabulary, display_token


def _text_part(text: str) -> str:
    """Context text drawn on one line: newlines and other controls as visible escapes."""
    return "".join(display_token(char) if not char.isprintable() else char for char in text)


CONTEXT_CELLS = 44


def _example_line(text: Text, value: float, top: float, context_ids, vocab: Vocabulary, first: bool) -> None:
    """One example: its activation, a bar as long as |activation| (intensity reads without colour),
    and its context with the firing token in ⟦ ⟧."""
    from engine.data.evidence_records import MARK_CLOSE, MARK_OPEN, example_context

    bar = "█" * max(1, round(6 * abs(value) / top)) if top > 0 and value != 0 else "·"
    before, firing, after = example_context(context_ids, vocab)
    # One line in the 64-cell panel (63 inside its scroll bar): 15 for the value and bar, at most
    # 44 for the context, whatever the lengths of the firing token and what comes before it.
    shown_before, shown_firing = _text_part(before)[-20:], _text_part(firing)[:12]
    room_after = max(0, min(12, CONTEXT_CELLS - 2 - len(shown_before) - len(shown_firing)))
    text.append(f"{value:+7.2f} {bar:<6} ", style="bold" if first else "")
    text.append(shown_before)
    text.append(f"{MARK_OPEN}{shown_firing}{MARK_CLOSE}", style="bold reverse")
    text.append(_text_part(after)[:room_after] + "\n")


def _pole_view(
    text: Text, evidence, pole_name: str, neuron: int, vocab: Vocabulary, never: str = "with this sign"
) -> None:
    pole = evidence.pole(pole_name)
    sign, tokens = ("+", "promote") if pole_name == "positive" else ("−", "suppress")
    lift, hit, base = float(pole.lift[neuron]), float(pole.hit_rate[neuron]), float(pole.base_rate[neuron])
    lift_text = "— (its tokens never come next)" if lift != lift else f"{lift:.2f}"
    text.append(f"\n{sign} pole", style="bold")
    among = " of its routed positions" if evidence.routed is not None else ""
    text.append(f" raises its {tokens} tokens · density {pole.density[neuron]:.1%}{among}\n")
    text.append(f"lift {lift_text}")
    if hit == hit and lift == lift:
        text.append(f" ({hit:.1%} of top {evidence.lift_positions} vs {base:.2%} overall)")
    entropy = float(pole.input_entropy[neuron])
    text.append(
        f"\ndirect effect {pole.direct_effect[neuron]:+.3f} · fires on {int(pole.input_forms[neuron])} "
        f"words{'' if entropy != entropy else f' ({entropy:.1f} bits)'}\n"
    )
    top = abs(float(pole.values[neuron, 0])) if pole.doc[neuron, 0] >= 0 else 0.0
    for rank in range(evidence.examples):
        if pole.doc[neuron, rank] < 0:
            break
        _example_line(
            text, float(pole.values[neuron, rank]), top, pole.context_ids[neuron, rank], vocab, rank == 0
        )
    if pole.doc[neuron, 0] < 0:
        text.append(f"never fires {never}\n", style="dim")


CASE_EXAMPLES = 3


def _cases_view(text: Text, cases, neuron: int, vocab: Vocabulary) -> None:
    from engine.data.evidence import CASES

    text.append("\ngate/up sign cases", style="bold")
    text.append(": share of positions, top examples\n")
    top = float(np.abs(cases.values[neuron]).max(initial=0.0))
    for number, name in enumerate(CASES):
        share = float(cases.shares[neuron, number])
        shown = "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"  # a handful of positions is not 0
        text.append(f"{name} {shown:>6}\n", style="bold")
        for rank in range(min(CASE_EXAMPLES, cases.doc.shape[2])):
            if cases.doc[neuron, number, rank] < 0:
                break
            value = float(cases.values[neuron, number, rank])
            _example_line(text, value, top, cases.context_ids[neuron, number, rank], vocab, False)


NO_NEGATIVE_POLE = "\n− pole: none (this dictionary's features do not take negative values)\n"


def evidence_view(
    evidence, neuron: int, vocab: Vocabulary, reading: EvidenceReading | None = None, negative: bool = True
) -> Text:
    """Where the neuron fires on the corpus, beside its weights: each pole's density, lift, direct
    effect and top examples, then (gated MLPs) the four gate/up sign cases. ``negative``: whether
    the units can take negative values (a dictionary's features mostly cannot: then its − pole is
    said to be none, not read as a neuron's that never fired)."""
    if evidence is None:
        return Text("on text: not read yet (A reads this layer's text; A again stops)", style="dim")
    text = Text()
    label = reading.label if reading is not None else f"{evidence.n_positions:,} tokens"
    text.append(f"on text ({label})\n", style="bold")
    if evidence.routed is not None:  # a layer of experts: where its expert ran at all
        gate = float(evidence.gate_mean[neuron]) if evidence.gate_mean is not None else float("nan")
        text.append(f"its expert ran at {evidence.routed[neuron]:.1%} of positions")
        text.append("\n" if gate != gate else f", its output weighted {gate:.3f} on average\n")
    if negative:
        for pole in ("positive", "negative"):
            _pole_view(text, evidence, pole, neuron, vocab)
    else:  # one sign: one that never fired is silent on the text read
        _pole_view(text, evidence, "positive", neuron, vocab, never="on the text read")
        text.append(NO_NEGATIVE_POLE, style="dim")
    if evidence.cases is not None:
        _cases_view(text, evidence.cases, neuron, vocab)
    return text
