"""Token strings: from a tokenizer's stored form to exact bytes, readable text and terminal-safe text.

Vocabularies store tokens in a tokenizer-specific alphabet: byte-level BPE (GPT-2, Llama 3, SmolLM2)
maps every byte to a printable character (a space becomes ``Ġ``); SentencePiece writes a space as
``▁`` and raw bytes as ``<0xE2>``. We keep each token's exact bytes and derive text from them.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

_HEX_ERRORS = "neuron_tui_hex"


def _hex_escape_errors(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: undecodable bytes become ``<0xE2>``, the form tokenizers use."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(f"<0x{byte:02X}>" for byte in bad), error.end


codecs.register_error(_HEX_ERRORS, _hex_escape_errors)


@functools.cache
def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


@functools.cache
def _byte_level_decoder() -> dict[str, int]:
    return {char: byte for byte, char in byte_level_alphabet().items()}


_SENTENCEPIECE_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def stored_token_to_bytes(stored: str, style: str, special: bool = False) -> bytes:
    """Exact bytes of one token given its stored vocabulary string.

    ``style`` is ``byte_level`` or ``sentencepiece``; ``special`` tokens (``<|endoftext|>``) are
    kept literally.
    """
    if special:
        return stored.encode("utf-8")
    if style == "byte_level":
        decoder = _byte_level_decoder()
        if all(char in decoder for char in stored):
            return bytes(decoder[char] for char in stored)
        return stored.encode("utf-8")
    if style == "sentencepiece":
        match = _SENTENCEPIECE_BYTE.match(stored)
        if match:
            return bytes([int(match.group(1), 16)])
        return stored.replace("▁", " ").encode("utf-8")
    return stored.encode("utf-8")


def bytes_to_text(raw: bytes) -> str:
    """Token text: UTF-8 where valid, ``<0xNN>`` for each byte that is not."""
    return raw.decode("utf-8", errors=_HEX_ERRORS)


_VISIBLE_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _invisible_space(char: str) -> bool:
    """Spaces other than the plain one (NBSP, thin and ideographic spaces...) draw as blanks that
    cannot be told apart from ␣ or from nothing: they are shown as escapes too."""
    return char != " " and unicodedata.category(char) == "Zs"


def display_token(text: str) -> str:
    """Text safe to draw in a terminal: leading/trailing spaces as ``␣``, control and format
    characters (ANSI escapes, NUL, bidi overrides) as backslash escapes.

    Rich markup is not escaped here: callers build ``rich.text.Text`` objects, which never parse it.
    """
    out = []
    for char in text:
        if char in _VISIBLE_CONTROLS:
            out.append(_VISIBLE_CONTROLS[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs") or _invisible_space(char):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    shown = "".join(out)
    stripped = shown.strip(" ")
    if not stripped:
        return "␣" * len(shown)
    lead = len(shown) - len(shown.lstrip(" "))
    trail = len(shown) - len(shown.rstrip(" "))
    return "␣" * lead + stripped + "␣" * trail


@dataclass(eq=False)
class Vocabulary:
    """Every token's exact bytes, packed: ``data[offsets[i]:offsets[i+1]]`` is token ``i``."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len = size + 1
    _texts: list[str] | None = field(default=None, repr=False)

    @classmethod
    def from_bytes(cls, tokens: list[bytes]) -> Vocabulary:
        lengths = np.fromiter((len(token) for token in tokens), dtype=np.int64, count=len(tokens))
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(tokens), dtype=np.uint8).copy()
        return cls(data=data, offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def token_bytes(self, token_id: int) -> bytes:
        return self.data[self.offsets[token_id] : self.offsets[token_id + 1]].tobytes()

    @property
    def texts(self) -> list[str]:
        """Decoded text of every token, built once on first use."""
        if self._texts is None:
            blob = self.data.tobytes()
            bounds = self.offsets.tolist()
            self._texts = [bytes_to_text(blob[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        return self._texts

    def text(self, token_id: int) -> str:
        """One token's text; decoded on first use (the screen shows a few hundred tokens, not all)."""
        if self._texts is not None:
            return self._texts[token_id]
        return bytes_to_text(self.token_bytes(token_id))

    def padded_to(self, size: int) -> Vocabulary:
        """The same vocabulary extended to ``size`` ids; ids beyond the tokenizer read ``<unused N>``
        (models often pad their unembedding past the tokenizer's vocabulary)."""
        if size <= len(self):
            return self
        tokens = [self.token_bytes(i) for i in range(len(self))]
        tokens += [f"<unused {i}>".encode() for i in range(len(self), size)]
        return Vocabulary.from_bytes(tokens)
