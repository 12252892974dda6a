"""Is late alignment a lens artefact? The all-layers table through two lenses, side by side.

Reads two weight scans of the same model and projection, one through the logit lens and one through
the Jacobian lens (JSONL, as ``neuron-tui scan`` writes them), and optionally the two coverage
documents (``neuron-tui coverage --output X.json``), and prints one row per layer: p99 max-dot,
standouts against the null (null-z > 3), prediction/suppression counts, covered share, and how many
neurons' top token (by |dot|, sign kept) changes between the lenses, with the mean Jaccard overlap
of their top-k promote sets.

    python -m bench.lens_findings logit.jsonl jlens.jsonl [logit-coverage.json jlens-coverage.json]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def _layers(path: str) -> dict[int, list[dict]]:
    layers: dict[int, list[dict]] = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            layers[record["layer"]].append(record)
    for records in layers.values():
        records.sort(key=lambda record: record["neuron"])
    return dict(layers)


def _covered(path: str | None) -> dict[int, float]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    return {int(row["layer"]): float(row["share"]) for row in document["layers"]}


def layer_row(logit: list[dict], jlens: list[dict]) -> dict:
    def p99(records):
        return float(np.quantile([record["max_dot"] for record in records], 0.99))

    def standouts(records):
        return sum(1 for record in records if (record.get("null_z") or 0.0) > 3.0)

    def classes(records):
        return sum(r["class"] == "prediction" for r in records), sum(
            r["class"] == "suppression" for r in records
        )

    changed = sum(
        (a["top"][0]["token_id"], a["top"][0]["dot"] > 0) != (b["top"][0]["token_id"], b["top"][0]["dot"] > 0)
        for a, b in zip(logit, jlens)
    )
    jaccard = [
        len({t["token_id"] for t in a["promote"]} & {t["token_id"] for t in b["promote"]})
        / len({t["token_id"] for t in a["promote"]} | {t["token_id"] for t in b["promote"]})
        for a, b in zip(logit, jlens)
    ]
    return {
        "p99": (p99(logit), p99(jlens)),
        "standouts": (standouts(logit), standouts(jlens)),
        "classes": (classes(logit), classes(jlens)),
        "top_changed": changed,
        "neurons": len(logit),
        "promote_jaccard": float(np.mean(jaccard)),
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    logit, jlens = _layers(argv[0]), _layers(argv[1])
    covered_logit, covered_jlens = (
        _covered(argv[2] if len(argv) == 4 else None),
        _covered(argv[3] if len(argv) == 4 else None),
    )
    print(
        "| layer | logit p99 | J p99 | logit ★ | J ★ | logit pred / supp | J pred / supp | logit covered "
        "| J covered | top token changed | promote Jaccard |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for layer in sorted(logit):
        row = layer_row(logit[layer], jlens[layer])
        (lp, ls), (jp, js) = row["classes"]
        cover = [
            f"{100 * table[layer]:.2f}%" if layer in table else "—"
            for table in (covered_logit, covered_jlens)
        ]
        print(
            f"| {layer} | {row['p99'][0]:.3f} | {row['p99'][1]:.3f} | {row['standouts'][0]} | "
            f"{row['standouts'][1]} | {lp} / {ls} | {jp} / {js} | {cover[0]} | {cover[1]} | "
            f"{row['top_changed']} of {row['neurons']} | {row['promote_jaccard']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
