"""Do the last layer's most vocabulary-aligned neurons do on text what their weights say?

For the ``--neurons`` neurons of layer ``--layer`` (default: the last) with the largest max-dot
(the weight scan's raw projection), on held-out windows of the default corpus: the neuron is set
to 0 at every position, the rest of the model recomputed, and the change of every token's logit is
averaged over the positions. Per neuron:

- ``rho``: Spearman's rank correlation, over the whole vocabulary, between its W_out·W_U row (the
  dots the explorer ranks tokens by) and the mean drop of each token's logit (clean − ablated);
- ``rho_folded``: the same against (γ ⊙ W_out)·W_U, the row as the final norm's weight passes it;
- the output score (after Arad et al. 2025, who score a feature by how much it raises the logits
  of the tokens it promotes): the mean drop of the ``--top`` tokens its weights promote most,
  minus the mean drop over every token, in logits, and that over the drop's standard deviation
  over the vocabulary (z);
- its mean activation on the windows (a negative one flips what removing it does).

Held-out windows: a corpus pass reads the corpus's documents in order, so the windows are the
first ``--context`` tokens of each of the corpus's last documents (long enough to fill one): a
pass capped below the token count printed never reads them.

The layer must be the last: its output goes straight to the final norm, so the ablated logits are
the final norm and the unembedding applied to the residual minus the neuron's write (exact, the
rest of the model recomputed). Two neurons are checked against a full forward pass with the
neuron zeroed by a hook; the largest difference is printed.

    python -m bench.attribution_findings [--neurons 100] [--windows 4] [--context 256] [--top 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.findings import spearman


def held_out_windows(tokenizer, windows: int, context: int) -> tuple[torch.Tensor, int, int]:
    """[windows, context] token ids from the last documents that have ``context`` tokens, how many
    documents that took from the end, and how many tokens the corpus holds before them."""
    from engine.activations.corpus import default_corpus

    documents = default_corpus().documents
    rows: list[list[int]] = []
    first = len(documents)
    while len(rows) < windows and first > 0:
        first -= 1
        ids = list(tokenizer(documents[first])["input_ids"])
        if len(ids) >= context:
            rows.append(ids[:context])
    before = sum(len(ids) for ids in tokenizer(list(documents[:first]))["input_ids"])
    return torch.tensor(rows[::-1]), len(documents) - first, before


def clean_pass(bridge, ids: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """The layer's MLP activations, its output residual and the logits, [positions, ...] each."""
    found: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(value: torch.Tensor, hook=None):
            found[name] = value.detach().clone()
            return value

        return hook

    hooks = [
        (f"blocks.{layer}.mlp.hook_post", keep("act")),
        (f"blocks.{layer}.hook_resid_post", keep("resid")),
    ]
    with torch.inference_mode():
        logits = bridge.run_with_hooks(ids, fwd_hooks=hooks)
    return {
        "act": found["act"].flatten(0, 1),
        "resid": found["resid"].flatten(0, 1),
        "logits": logits.flatten(0, 1).float(),
    }


def readout(bridge, resid: torch.Tensor) -> torch.Tensor:
    """The logits of a last residual: the final norm, then the unembedding."""
    with torch.inference_mode():
        return bridge.unembed(bridge.ln_final(resid[None]))[0].float()


def ablated_mean_delta(bridge, clean: dict, w_out: torch.Tensor, neuron: int, rows: int = 256) -> np.ndarray:
    """[vocab] float64: the mean over positions of the logits with ``neuron`` zeroed everywhere
    minus the clean logits."""
    total = torch.zeros(clean["logits"].shape[1], dtype=torch.float64)
    for start in range(0, clean["resid"].shape[0], rows):
        part = slice(start, start + rows)
        resid = clean["resid"][part] - clean["act"][part, neuron : neuron + 1] * w_out[neuron]
        total += (readout(bridge, resid) - clean["logits"][part]).double().sum(dim=0)
    return (total / clean["resid"].shape[0]).numpy()


def hooked_check(bridge, ids: torch.Tensor, layer: int, neuron: int, clean: dict, w_out) -> float:
    """The largest |difference| between the shortcut's ablated logits and a full forward pass with
    the neuron zeroed by a hook."""

    def zero(value: torch.Tensor, hook=None):
        value[..., neuron] = 0
        return value

    with torch.inference_mode():
        full = bridge.run_with_hooks(ids, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", zero)])
    resid = clean["resid"] - clean["act"][:, neuron : neuron + 1] * w_out[neuron]
    return float((full.flatten(0, 1).float() - readout(bridge, resid)).abs().max())


def output_score(dots: np.ndarray, drop: np.ndarray, top: int) -> tuple[float, float]:
    """The ``top`` tokens of largest ``dots``: their mean drop minus every token's, and that over
    the drop's standard deviation over the vocabulary."""
    promoted = np.argsort(-dots, kind="stable")[:top]
    excess = float(drop[promoted].mean() - drop.mean())
    return excess, excess / float(drop.std()) if drop.std() > 0 else float("nan")


def neuron_row(dots: np.ndarray, folded: np.ndarray, drop: np.ndarray, top: int, sign: float) -> dict:
    """``sign``: of the neuron's mean activation; the tokens it pushes up on the text are the top
    of sign × dots (a negative activation writes −W_out)."""
    score, z = output_score(dots, drop, top)
    acting, acting_z = output_score(sign * dots, drop, top)
    return {
        "rho": spearman(dots, drop),
        "rho_folded": spearman(folded, drop),
        "output_score": score,
        "output_z": z,
        "acting_score": acting,
        "acting_z": acting_z,
    }


def run(args) -> dict:
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ScanSettings

    started = time.perf_counter()
    engine = NeuronEngine(EngineOptions(device="cpu", use_cache=False))
    layer = engine.info.n_layers - 1 if args.layer is None else args.layer
    if layer != engine.info.n_layers - 1:
        raise SystemExit("the layer must be the model's last (its output goes straight to the final norm)")
    result = engine.layer(layer, ScanSettings())
    chosen = np.argsort(-result.max_dot, kind="stable")[: args.neurons]
    bridge, tokenizer, _ = engine.activation_model()
    ids, documents, before = held_out_windows(tokenizer, args.windows, args.context)
    clean = clean_pass(bridge, ids, layer)
    w_out = bridge.blocks[layer].mlp.W_out.detach().float()
    w_u = bridge.W_U.detach().double()
    gamma = torch.from_numpy(np.asarray(bridge_final_norm_scale(bridge), dtype=np.float64))
    checks = [hooked_check(bridge, ids, layer, int(n), clean, w_out) for n in chosen[:2]]
    rows = []
    for neuron in chosen.tolist():
        row_out = w_out[neuron].double()
        dots = (row_out @ w_u).numpy()
        folded = ((row_out * gamma) @ w_u).numpy()
        drop = -ablated_mean_delta(bridge, clean, w_out, neuron)
        mean_activation = float(clean["act"][:, neuron].double().mean())
        row = {"neuron": neuron, "max_dot": float(result.max_dot[neuron])}
        row |= neuron_row(dots, folded, drop, args.top, 1.0 if mean_activation >= 0 else -1.0)
        row["mean_activation"] = mean_activation
        row["top_token"] = engine.vocabulary.text(int(np.argmax(dots)))
        rows.append(row)
    return {
        "model": engine.location.display_name,
        "layer": layer,
        "neurons": len(rows),
        "windows": int(ids.shape[0]),
        "tokens": int(ids.numel()),
        "documents_from_the_end": documents,
        "tokens_before": before,
        "top": args.top,
        "hooked_check_max_abs": max(checks),
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }


def bridge_final_norm_scale(bridge) -> np.ndarray:
    from engine.sources.bridge_source import bridge_final_norm

    norm = bridge_final_norm(bridge)
    return np.ones(int(bridge.cfg.d_model)) if norm is None else norm.scale


def summary(found: dict) -> str:
    rows = found["rows"]

    def quartiles(name: str) -> str:
        values = np.array([row[name] for row in rows])
        low, mid, high = np.percentile(values, [25, 50, 75])
        return f"median {mid:+.3f} (quartiles {low:+.3f} / {high:+.3f})"

    rho = np.array([row["rho"] for row in rows])
    z = np.array([row["output_z"] for row in rows])
    acting = np.array([row["acting_z"] for row in rows])
    negative = np.array([row["mean_activation"] < 0 for row in rows])
    signed = np.where(negative, -rho, rho)
    low, mid, high = np.percentile(signed, [25, 50, 75])
    lines = [
        f"{found['model']}, layer {found['layer']}: the {found['neurons']} neurons of largest max-dot, "
        f"ablated on {found['windows']} held-out windows ({found['tokens']} tokens; the corpus's last "
        f"{found['documents_from_the_end']} documents, after {found['tokens_before']:,} tokens)",
        "shortcut vs a hooked forward pass: largest |Δ logit| difference "
        f"{found['hooked_check_max_abs']:.2e}",
        f"Spearman(W_out·W_U, mean drop): {quartiles('rho')}; > 0.5 for {int((rho > 0.5).sum())}, "
        f"< 0 for {int((rho < 0).sum())}",
        f"  times the sign of the mean activation: median {mid:+.3f} (quartiles {low:+.3f} / {high:+.3f}); "
        f"> 0.5 for {int((signed > 0.5).sum())}",
        f"Spearman((γ⊙W_out)·W_U, mean drop): {quartiles('rho_folded')}",
        f"output score (top-{found['top']} promoted tokens' mean drop − all tokens'): "
        f"{quartiles('output_score')} logits; as z {quartiles('output_z')}; > 0 for {int((z > 0).sum())}",
        f"  on the tokens it pushes up on the text (sign of the mean activation × dots): "
        f"{quartiles('acting_score')} logits; as z {quartiles('acting_z')}; "
        f"> 0 for {int((acting > 0).sum())}",
        f"mean activation negative on the windows: {int(negative.sum())} of {len(rows)}",
        f"{found['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attribution_findings")
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write every neuron's row here")
    args = parser.parse_args()
    found = run(args)
    print(summary(found))
    for row in sorted(found["rows"], key=lambda r: -r["rho"]):
        print(
            f"N{row['neuron']:<5} max-dot {row['max_dot']:6.2f}  rho {row['rho']:+.3f}  folded "
            f"{row['rho_folded']:+.3f}  score {row['output_score']:+.4f} (z {row['output_z']:+.2f}, acting "
            f"{row['acting_z']:+.2f})  "
            f"act {row['mean_activation']:+.3f}  top {row['top_token']!r}"
        )
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
