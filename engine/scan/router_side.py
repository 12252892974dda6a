"""The router of a layer of experts against the vocabulary (engine.data.routing), in float64.

Each token's embedding goes through the norm before the MLP (RMSNorm or LayerNorm with the
weight stored for the layer and the config's epsilon), then through the model's own router: the
router class transformers defines for the architecture (its softmax or sigmoid scores, top-k,
bias and expert groups), built from config.json with the layer's weights. The embedding is read
a block of rows at a time.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from engine.data.model import EmbeddingRows, FinalNorm
from engine.data.routing import LayerRouting
from engine.errors import UserError

_BLOCK_ROWS = 8192


def router_module(model_dir: Path, layer: int, weight: np.ndarray, extras: dict[str, np.ndarray]):
    """transformers' router for the checkpoint's architecture, holding the layer's weights."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    config = getattr(config, "get_text_config", lambda: config)()
    model_type = str(config.model_type)
    try:
        module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    except ImportError:
        raise UserError(
            f"transformers has no modeling code for {model_type}: its router cannot be run"
        ) from None
    routers = [cls for name, cls in vars(module).items() if name.endswith(("TopKRouter", "TopkRouter"))]
    if not routers:
        raise UserError(f"transformers defines no top-k router for {model_type}")
    router = routers[0](config).to(torch.float64).eval()
    state = {"weight": torch.from_numpy(weight).double()}
    state.update({name: torch.from_numpy(value).double() for name, value in extras.items()})
    missing = set(router.state_dict()) - set(state)
    if missing:
        raise UserError(f"layer {layer}'s router needs {sorted(missing)[0]}, which the files lack")
    router.load_state_dict({k: v for k, v in state.items() if k in router.state_dict()})
    return router, config


def layer_routing(
    layer: int,
    embedding: EmbeddingRows,
    norm: FinalNorm | None,
    epsilon: float,
    router,
    n_vocab: int,
    top: int,
) -> LayerRouting:
    """Every token's router logits (float64, by definition: W_r · x + bias) and the experts the
    router chooses for it, its embedding as the MLP's input."""
    weight = router.weight.detach().double()
    bias = getattr(router, "bias", None)
    n_experts = int(weight.shape[0])
    top = min(top, n_vocab)
    best_logits = np.full((n_experts, 0), -np.inf)
    best_ids = np.zeros((n_experts, 0), dtype=np.int64)
    chosen = np.zeros(n_experts, dtype=np.int64)
    per_token = 0
    with torch.inference_mode():
        for start in range(0, n_vocab, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, n_vocab)
            rows = _normalised(torch.from_numpy(embedding.rows(start, stop)).double(), norm, epsilon)
            index = router(rows)[-1]  # (logits, weights, chosen experts)
            logits = rows @ weight.T if bias is None else rows @ weight.T + bias.detach().double()
            per_token = int(index.shape[-1])
            chosen += np.bincount(index.reshape(-1).numpy(), minlength=n_experts)[:n_experts]
            block = logits.double().numpy().T  # [experts, block]
            merged = np.concatenate([best_logits, block], axis=1)
            ids = np.concatenate([best_ids, np.broadcast_to(np.arange(start, stop), block.shape)], axis=1)
            order = np.argsort(-merged, axis=1, kind="stable")[:, :top]
            best_logits, best_ids = np.take_along_axis(merged, order, 1), np.take_along_axis(ids, order, 1)
    return LayerRouting(layer, best_ids.astype(np.int32), best_logits, chosen / n_vocab, per_token)


def _normalised(rows: torch.Tensor, norm: FinalNorm | None, epsilon: float) -> torch.Tensor:
    """Rows through the norm before the MLP, in float64."""
    if norm is not None and norm.centres:
        rows = rows - rows.mean(-1, keepdim=True)
        rows = rows / torch.sqrt(rows.pow(2).mean(-1, keepdim=True) + epsilon)
    else:
        rows = rows * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + epsilon)
    return rows if norm is None else rows * torch.from_numpy(norm.scale).double()
