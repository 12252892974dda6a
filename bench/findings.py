"""Does vocabulary alignment predict that a neuron fires right before its token?

Reads a weight scan and an activation pass of the same model and settings (both JSONL, as
``neuron-tui scan`` and ``neuron-tui activations`` write them) and prints, per layer, the median
lift of prediction neurons (kurtosis > 10, skew > 0) against the other neurons, and the Spearman
rank correlation of max-dot and of null-z with lift, over the neurons whose lift is defined.

    python -m bench.findings scan.jsonl activations.jsonl
"""

from __future__ import annotations

import json
import sys

import numpy as np


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


def read(path: str, fields: tuple[str, ...]) -> dict[tuple[int, int], dict]:
    rows = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rows[(record["layer"], record["neuron"])] = {f: record.get(f) for f in fields}
    return rows


def main(scan_path: str, activations_path: str) -> None:
    scan = read(scan_path, ("max_dot", "null_z", "class"))
    acts = read(activations_path, ("lift", "hit_rate", "base_rate", "density"))
    layers = sorted({layer for layer, _ in acts})
    print(
        "| layer | prediction neurons (of neurons with a lift) | median lift, prediction "
        "| median lift, others | lift > 2, prediction | lift > 2, others "
        "| Spearman(max-dot, lift) | Spearman(null-z, lift) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    all_rho = []
    for layer in layers:
        keys = [k for k in acts if k[0] == layer and acts[k]["lift"] is not None and k in scan]
        lift = np.array([acts[k]["lift"] for k in keys])
        max_dot = np.array([scan[k]["max_dot"] for k in keys])
        null_z = np.array([scan[k]["null_z"] if scan[k]["null_z"] is not None else np.nan for k in keys])
        prediction = np.array([scan[k]["class"] == "prediction" for k in keys])
        med_p = np.median(lift[prediction]) if prediction.any() else float("nan")
        med_o = np.median(lift[~prediction]) if (~prediction).any() else float("nan")
        rho_dot = spearman(max_dot, lift)
        rho_z = spearman(null_z, lift) if np.isfinite(null_z).all() else float("nan")
        all_rho.append(rho_dot)
        above_p = (lift[prediction] > 2).mean() if prediction.any() else float("nan")
        above_o = (lift[~prediction] > 2).mean() if (~prediction).any() else float("nan")
        print(
            f"| {layer} | {int(prediction.sum())} ({len(keys)}) | {med_p:.1f} | {med_o:.1f} "
            f"| {above_p:.0%} | {above_o:.0%} | {rho_dot:+.2f} | {rho_z:+.2f} |"
        )
    print(f"\nmedian over layers of Spearman(max-dot, lift): {np.nanmedian(all_rho):+.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
