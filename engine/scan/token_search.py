"""From tokens to their best neurons, exactly, in float64 (which tokens a text means:
engine.data.token_index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    ``w_out_of(layer)`` gives W_out [d_mlp, d_model] (float32) in row blocks, one after the other
    (a layer of experts: an expert at a time); ``transport_of(layer)`` the lens's
    J_l (float64) or None; ``unembed`` is the ``ProjectedUnembed`` of the scan's projection. A
    token's column against a whole layer is one float64 matrix-vector product, so no candidate list
    can miss anything.
    """
    import torch

    ids = torch.tensor(token_ids, dtype=torch.long, device=unembed.device)
    columns = unembed.exact_columns(ids)  # [t, d] float64
    found: dict[int, list[TokenNeuron]] = {token_id: [] for token_id in token_ids}
    for layer in layers:
        transport = transport_of(layer) if transport_of is not None else None
        parts = []
        for block in w_out_of(layer):
            rows = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(unembed.device).double()
            if transport is not None:
                rows = rows @ torch.from_numpy(transport).to(unembed.device).T
            if cosine:
                rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
            parts.append((rows @ columns.T).cpu().numpy())
        dots = np.concatenate(parts)  # [d_mlp, t]
        keep = min(top, dots.shape[0])
        for column, token_id in enumerate(token_ids):
            best = np.argsort(-np.abs(dots[:, column]), kind="stable")[:keep]
            found[token_id] += [TokenNeuron(token_id, layer, int(n), float(dots[n, column])) for n in best]
    for entries in found.values():
        entries.sort(key=lambda entry: (-abs(entry.dot), entry.layer, entry.neuron))
        del entries[top:]
    return found
