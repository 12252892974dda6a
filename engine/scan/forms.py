"""A token's normalised form, and the "one token or a concept?" counts built on it.

Two tokens have the same form when they spell the same word up to a leading space, case and
surrounding punctuation: `` Paris``, ``Paris`` and ``paris,`` are one form. The rule, applied to a
token's exact bytes:

1. drop one leading space marker (a space, ``Ġ`` or ``▁``: vocabularies whose strings were not
   mapped back to bytes still carry the last two);
2. a token that is not valid UTF-8 (a byte piece of a longer character) is its own form, written
   as its bytes in hex (``<0xE2><0x80>``), and the rest of the rule does not apply;
3. casefold, then strip whitespace and punctuation (Unicode categories P*) from both ends;
4. a token left empty (``,``, `` ``, ``"(``) has no form: it counts nowhere.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

import numpy as np

from engine.data.tokens import Vocabulary

_SPACE_MARKERS = ("Ġ", "▁")


def _strippable(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def normalise_form(raw: bytes) -> str | None:
    """The token's form, or None when nothing is left of it."""
    if raw.startswith(b" "):
        raw = raw[1:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"<0x{byte:02X}>" for byte in raw)
    for marker in _SPACE_MARKERS:
        if text.startswith(marker):
            text = text[len(marker) :]
            break
    text = text.casefold()
    start, stop = 0, len(text)
    while start < stop and _strippable(text[start]):
        start += 1
    while stop > start and _strippable(text[stop - 1]):
        stop -= 1
    return text[start:stop] or None


def form_ids(vocab: Vocabulary) -> np.ndarray:
    """[len(vocab)] int32: each token's form as a number (equal forms, equal numbers), -1 for none."""
    numbers: dict[str, int] = {}
    out = np.full(len(vocab), -1, dtype=np.int32)
    for token in range(len(vocab)):
        form = normalise_form(vocab.token_bytes(token))
        if form is not None:
            out[token] = numbers.setdefault(form, len(numbers))
    return out


def distinct_forms(forms: np.ndarray) -> np.ndarray:
    """Per row of form numbers [n, k] (-1: none), how many distinct forms it holds."""
    ordered = np.sort(forms, axis=1)
    new = np.ones_like(ordered, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return (new & (ordered >= 0)).sum(axis=1).astype(np.int32)


def top_form_share(forms: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row, the share of the row's summed ``weights`` held by its most frequent form (ties:
    the form with the larger summed weight). NaN for a row with no form or no weight."""
    out = np.full(forms.shape[0], np.nan)
    for row in range(forms.shape[0]):
        held = forms[row] >= 0
        if not held.any():
            continue
        counts = Counter(forms[row][held].tolist())
        mass: dict[int, float] = {}
        for form, weight in zip(forms[row][held].tolist(), weights[row][held].tolist()):
            mass[form] = mass.get(form, 0.0) + weight
        best = max(counts, key=lambda form: (counts[form], mass[form]))
        total = float(np.sum(weights[row]))
        if total > 0:
            out[row] = mass[best] / total
    return out


def form_entropy(forms: np.ndarray) -> np.ndarray:
    """Per row, the entropy in bits of the distribution of its forms (entries of -1 left out);
    NaN for a row with none."""
    out = np.full(forms.shape[0], np.nan)
    for row in range(forms.shape[0]):
        held = forms[row][forms[row] >= 0]
        if held.size == 0:
            continue
        counts = np.array(list(Counter(held.tolist()).values()), dtype=np.float64)
        share = counts / counts.sum()
        out[row] = float(-(share * np.log2(share)).sum()) + 0.0  # + 0.0: no "-0.0"
    return out
