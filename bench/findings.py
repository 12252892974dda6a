"""Whole neurons, per layer: both poles' lift, one word or a concept, one input token or many, and
whether a neuron reads what it writes.

Reads a weight scan and an activation pass of the same model and settings (both JSONL, as
``neuron-tui scan`` and ``neuron-tui activations`` write them) and prints four tables:

1. lift of each pole for prediction and suppression neurons (Gurnee et al.'s classes), and the
   Spearman rank correlation of max-dot with the positive pole's lift;
2. among the aligned neurons (null-z > 3), the share that is one word (``forms`` <= 2 on the list
   of its strongest token: promote when that token's dot is positive, else suppress) and the share
   that is a concept (``forms`` > 2 and ``coherence_z`` > 3; and, stricter, ``coherence_dir_z`` > 3,
   against which "neither" is counted);
3. for the same neurons, on the pole that writes that list (positive for promote, negative for
   suppress): the share firing on one word (``input_forms`` <= 2) and the median input entropy;
4. the input side: the share of neurons whose input rows read a form their output writes (a form
   shared between the up row's (or W_in's) ``plus`` tokens and the promote tokens, or between its
   ``minus`` tokens and the suppress tokens), and the IO classes of Gerstner & Schütze.

    python -m bench.findings scan.jsonl activations.jsonl [concepts.jsonl]

``concepts.jsonl``, a scan of the same model under another projection, is read for tables 2-3's
weight-side numbers (forms, coherence, null-z, the strongest token's sign) when given: coherence
under the raw projection is dominated by the unembedding's shared mean direction, so the centred
cosine setting (``--fold-final-norm --center-unembed --cosine``) is the one to read it in.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np

from engine.scan.forms import normalise_form

ALIGNED_Z = 3.0


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def read(path: str) -> dict[tuple[int, int], dict]:
    rows = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rows[(record["layer"], record["neuron"])] = record
    return rows


def _forms(tokens: list[dict]) -> set[str]:
    found = (normalise_form(entry["token"].encode("utf-8", "surrogatepass")) for entry in tokens)
    return {form for form in found if form is not None}


def _median(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.median(values):.1f}" if values else "—"


def _share(flags) -> str:
    flags = list(flags)
    return f"{np.mean(flags):.0%}" if flags else "—"


def main(scan_path: str, activations_path: str, concepts_path: str | None = None) -> None:
    scan, acts = read(scan_path), read(activations_path)
    concepts = read(concepts_path) if concepts_path else scan
    layers = sorted({layer for layer, _ in acts})

    print("1. Lift of each pole: prediction (P) and suppression (S) neurons")
    print(
        "| layer | P / S | P: lift + | P: lift − | S: lift + | S: lift − | S: lift − > 2 "
        "| Spearman(max-dot, lift +) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for layer in layers:
        keys = [k for k in acts if k[0] == layer and k in scan]
        pred = [k for k in keys if scan[k]["class"] == "prediction"]
        supp = [k for k in keys if scan[k]["class"] == "suppression"]
        lifted = [k for k in keys if acts[k]["lift"] is not None]
        rho = spearman(
            np.array([scan[k]["max_dot"] for k in lifted]), np.array([acts[k]["lift"] for k in lifted])
        )
        s_neg = [acts[k]["negative"]["lift"] for k in supp if acts[k]["negative"]["lift"] is not None]
        print(
            f"| {layer} | {len(pred)} / {len(supp)} | {_median(acts[k]['lift'] for k in pred)} "
            f"| {_median(acts[k]['negative']['lift'] for k in pred)} "
            f"| {_median(acts[k]['lift'] for k in supp)} "
            f"| {_median(acts[k]['negative']['lift'] for k in supp)} "
            f"| {_share(v > 2 for v in s_neg)} | {rho:+.2f} |"
        )

    print("\n2-3. Aligned neurons (null-z > 3): one word or a concept; one input word or many")
    print(
        "| layer | aligned | one word (forms ≤ 2) | concept vs random tokens (forms > 2, coh-z > 3) "
        "| concept vs random directions (forms > 2, coh-dir-z > 3) | neither "
        "| fires on one word (input forms ≤ 2) | median input entropy (bits) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for layer in layers:
        keys = [
            k
            for k in acts
            if k[0] == layer and k in concepts and (concepts[k].get("null_z") or 0) > ALIGNED_Z
        ]
        one = concept = strict = 0
        fires_one, entropy = [], []
        for k in keys:
            record = concepts[k]
            promote_side = record["top"][0]["dot"] > 0
            forms = record["forms"] if promote_side else record["supp_forms"]
            z = record["coherence_z"] if promote_side else record["supp_coherence_z"]
            dir_z = record["coherence_dir_z"] if promote_side else record["supp_coherence_dir_z"]
            one += forms is not None and forms <= 2
            concept += forms is not None and forms > 2 and z is not None and z > 3
            strict += forms is not None and forms > 2 and dir_z is not None and dir_z > 3
            pole = acts[k] if promote_side else acts[k]["negative"]
            if pole["input_entropy"] is not None:
                fires_one.append(pole["input_forms"] <= 2)
                entropy.append(pole["input_entropy"])
        n = max(len(keys), 1)
        print(
            f"| {layer} | {len(keys)} | {one / n:.0%} | {concept / n:.0%} | {strict / n:.0%} "
            f"| {(len(keys) - one - strict) / n:.0%} "
            f"| {_share(fires_one)} | {_median(entropy)} |"
        )

    print("\n4. Input side: reads what it writes; IO classes (Gerstner & Schütze)")
    print(
        "| layer | reads a form it writes (all) | same, aligned | enrichment (all kinds) "
        "| depletion (all kinds) | orthogonal output |"
    )
    print("|---|---|---|---|---|---|")
    for layer in layers:
        keys = [k for k in scan if k[0] == layer and "input" in scan[k]]
        if not keys:
            continue
        same, same_aligned = [], []
        classes: Counter[str] = Counter()
        for k in keys:
            record = scan[k]
            row = record["input"].get("up") or record["input"]["in"]
            shared = bool(_forms(row["plus"]) & _forms(record["promote"])) or bool(
                _forms(row["minus"]) & _forms(record["suppress"])
            )
            same.append(shared)
            if (record.get("null_z") or 0) > ALIGNED_Z:
                same_aligned.append(shared)
            classes[record["io_class"]] += 1
        n = len(keys)
        enrich = sum(c for name, c in classes.items() if "enrichment" in name)
        deplete = sum(c for name, c in classes.items() if "depletion" in name)
        print(
            f"| {layer} | {_share(same)} | {_share(same_aligned)} | {enrich / n:.0%} | {deplete / n:.0%} "
            f"| {classes['orthogonal output'] / n:.0%} |"
        )


if __name__ == "__main__":
    main(*sys.argv[1:4])
