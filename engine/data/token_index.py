"""From text to tokens: which token ids a user means by a string.

A user typing `the` means the token " the" as often as "the": matches include the exact string
first, then the variants with or without a leading space, in other casings, and with a tokenizer's
space marker (``Ġ``, ``▁``) read as a space.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.tokens import Vocabulary

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
