"""Layer specifications such as ``13``, ``0-5``, ``0,3,7`` or ``all``."""

from __future__ import annotations

from engine.errors import UserError

ALL = ("all", "*")


def _ranges(spec: str) -> list[tuple[int, int]] | None:
    """The inclusive ranges ``spec`` names, or None for all layers; bad syntax is a ``UserError``."""
    text = spec.strip().lower()
    if text in ALL:
        return None
    ranges = []
    for part in text.split(","):
        part = part.strip()
        try:
            if not part:
                raise ValueError
            if "-" in part[1:]:
                lo_text, hi_text = part.split("-", 1)
                lo, hi = int(lo_text), int(hi_text)
            else:
                lo = hi = int(part)
            if lo < 0 or lo > hi:
                raise ValueError
        except ValueError:
            what = "an empty layer spec" if not text else f"layer spec {spec!r}"
            raise UserError(
                f"cannot read {what}: use a number (13), a range (0-5), a list (0,3,7) or 'all'"
            ) from None
        ranges.append((lo, hi))
    return ranges


def check_layer_spec(spec: str) -> None:
    """Check the syntax alone, before the model's layer count is known."""
    _ranges(spec)


def parse_layer_spec(spec: str, n_layers: int) -> list[int]:
    """Return the sorted, de-duplicated layers that ``spec`` names, checked against ``n_layers``."""
    ranges = _ranges(spec)
    if ranges is None:
        return list(range(n_layers))
    bad = [hi for _, hi in ranges if hi >= n_layers]
    if bad:
        first_bad = min(max(lo, n_layers) for lo, hi in ranges if hi >= n_layers)
        raise UserError(f"layer {first_bad} is out of range: this model has layers 0-{n_layers - 1}")
    return sorted({layer for lo, hi in ranges for layer in range(lo, hi + 1)})
