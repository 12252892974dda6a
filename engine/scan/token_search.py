"""From text to tokens, and from tokens to their best neurons (exactly, in float64).

A user typing `the` means the token " the" as often as "the": matches include the exact string
first, then the variants with or without a leading space, in other casings, and with a tokenizer's
space marker (``Ġ``, ``▁``) read as a space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.tokens import Vocabulary

_SPACE_MARKERS = ("Ġ", "▁")


@dataclass(frozen=True)
class TokenMatch:
    token_id: int
    text: str
    exact: bool


class TokenIndex:
    """Text -> token ids for one vocabulary."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self._ids: dict[str, list[int]] = {}
        for token_id, text in enumerate(vocab.texts):
            self._ids.setdefault(text, []).append(token_id)

    @staticmethod
    def variants(query: str) -> list[str]:
        """The strings a user may mean by ``query``: the query itself, the other spacing, then
        other casings (lower, Capitalised, UPPER, Title) of both spacings."""
        base = query
        for marker in _SPACE_MARKERS:
            if base.startswith(marker):
                base = " " + base[len(marker) :]
        bare = base.lstrip(" ")

        def capitalised(text: str) -> str:
            lead = len(text) - len(text.lstrip(" "))
            return text[:lead] + text[lead:].capitalize()

        forms: list[str] = [query]
        for casing in (lambda t: t, str.lower, capitalised, str.upper, str.title):
            for stem in (base, " " + bare, bare):
                form = casing(stem)
                if form.strip() and form not in forms:
                    forms.append(form)
        return forms

    def find(self, query: str) -> list[TokenMatch]:
        matches: list[TokenMatch] = []
        seen: set[int] = set()
        for form in self.variants(query):
            for token_id in self._ids.get(form, []):
                if token_id not in seen:
                    seen.add(token_id)
                    matches.append(TokenMatch(token_id, form, exact=form == query))
        return matches

    def search(self, text: str, limit: int = 50) -> list[TokenMatch]:
        """Matches for interactive search: exact and variants first, then tokens containing ``text``."""
        found = self.find(text) if text else []
        if not text.strip():
            return found[:limit]
        seen = {match.token_id for match in found}
        needle = text.strip().lower()
        for token_id, token_text in enumerate(self.vocab.texts):
            if len(found) >= limit:
                break
            if token_id not in seen and needle in token_text.lower():
                found.append(TokenMatch(token_id, token_text, exact=False))
        return found[:limit]


@dataclass(frozen=True)
class TokenNeuron:
    token_id: int
    layer: int
    neuron: int
    dot: float


def exact_token_neurons(
    token_ids: list[int], layers: list[int], w_out_of, unembed, top: int, cosine: bool, transport_of=None
) -> dict[int, list[TokenNeuron]]:
    """For each token, the ``top`` neurons over ``layers`` with the largest exact |dot|.

    ``w_out_of(layer)`` gives W_out [d_mlp, d_model] (float32); ``transport_of(layer)`` the lens's
    J_l (float64) or None; ``unembed`` is the ``ProjectedUnembed`` of the scan's projection. A
    token's column against a whole layer is one float64 matrix-vector product, so no candidate list
    can miss anything.
    """
    import torch

    ids = torch.tensor(token_ids, dtype=torch.long, device=unembed.device)
    columns = unembed.exact_columns(ids)  # [t, d] float64
    found: dict[int, list[TokenNeuron]] = {token_id: [] for token_id in token_ids}
    for layer in layers:
        rows = (
            torch.from_numpy(np.ascontiguousarray(w_out_of(layer), dtype=np.float32))
            .to(unembed.device)
            .double()
        )
        transport = transport_of(layer) if transport_of is not None else None
        if transport is not None:
            rows = rows @ torch.from_numpy(transport).to(unembed.device).T
        if cosine:
            rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        dots = (rows @ columns.T).cpu().numpy()  # [d_mlp, t]
        keep = min(top, dots.shape[0])
        for column, token_id in enumerate(token_ids):
            best = np.argsort(-np.abs(dots[:, column]), kind="stable")[:keep]
            found[token_id] += [TokenNeuron(token_id, layer, int(n), float(dots[n, column])) for n in best]
    for entries in found.values():
        entries.sort(key=lambda entry: (-abs(entry.dot), entry.layer, entry.neuron))
        del entries[top:]
    return found
