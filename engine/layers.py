"""Parsing of layer specifications such as ``13``, ``0-5``, ``0,3,7`` or ``all``."""

from __future__ import annotations

from engine.errors import UserError


def parse_layer_spec(spec: str, n_layers: int) -> list[int]:
    """Return the sorted, de-duplicated layers that ``spec`` names, checked against ``n_layers``."""
    text = spec.strip().lower()
    if text in ("all", "*", ""):
        return list(range(n_layers))
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo_text, hi_text = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(lo_text), int(hi_text)
                if lo > hi:
                    raise ValueError
                layers.update(range(lo, hi + 1))
            else:
                layers.add(int(part))
        except ValueError:
            raise UserError(
                f"cannot read layer spec {spec!r}: use a number (13), a range (0-5), a list (0,3,7) or 'all'"
            ) from None
    bad = sorted(layer for layer in layers if not 0 <= layer < n_layers)
    if bad:
        raise UserError(f"layer {bad[0]} is out of range: this model has layers 0-{n_layers - 1}")
    return sorted(layers)
