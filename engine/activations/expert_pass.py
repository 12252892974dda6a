"""A layer of experts in a forward pass: every expert neuron's activation where the model routes to
its expert, read off the model's own modules.

TransformerLens wraps a routed MLP whole, so the pass listens to the model's own modules with
PyTorch hooks: the experts module is called with the MLP's input, the router's chosen experts and
their weights (transformers' experts interface); the shared expert's output projection is called
with its neurons' activations. An expert's activations are then formed as its module forms them,
with the module's own weights and its own gating (``_apply_gate``: SwiGLU, gpt-oss's clamped GLU),
at the positions routed to it; elsewhere an expert neuron does not run, and its activation is 0.

Laid out as the layer's flat neurons (engine.data.experts), the activations go through the same
per-neuron state as a dense layer's. Beside them: which positions each neuron's expert was routed
(``routed``, so that density is a share of those positions), and the activations times the weight
the model gives the expert's output there (the router's weight; the shared expert's sigmoid gate
in Qwen2-MoE), which is what the neuron adds to the residual stream, for attribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data.experts import SHARED, LayerExperts
from engine.errors import UserError


def _unwrapped(module):
    """The transformers module under a TransformerLens bridge component (or the module itself)."""
    return getattr(module, "original_component", None) or module


class ExpertLayer:
    """One layer of experts' modules, hooked for a pass; ``take()`` gives a forward's activations."""

    def __init__(self, bridge, layer: int, experts: LayerExperts) -> None:
        self.layer, self.experts = layer, experts
        block = _unwrapped(bridge.blocks[layer].mlp)
        found = getattr(block, "experts", None)
        if found is None:
            raise UserError(f"layer {layer}'s MLP has no experts module that the pass can read")
        self._experts_call = found
        self.module = _unwrapped(found)
        if not getattr(self.module, "has_gate", True) or not hasattr(self.module, "gate_up_proj"):
            raise UserError(f"layer {layer}'s experts ({type(self.module).__name__}) have no gate_up_proj")
        shared = getattr(block, "shared_expert", None) or getattr(block, "shared_experts", None)
        self.shared = None if shared is None else _unwrapped(shared)
        self.shared_gate = getattr(block, "shared_expert_gate", None)
        self._handles: list = []
        self._held: dict[str, torch.Tensor] = {}
        self.last_gates: torch.Tensor | None = None  # the last forward's, for a probe to show

    # --- listening ----------------------------------------------------------------------------
    def attach(self) -> None:
        self._handles.append(self._experts_call.register_forward_hook(self._on_experts, with_kwargs=True))
        if self.shared is not None:
            down = _unwrapped(self.shared.down_proj)
            self._handles.append(down.register_forward_hook(self._on_shared))
        if self.shared_gate is not None:
            self._handles.append(self.shared_gate.register_forward_hook(self._on_shared_gate))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._held.clear()

    def _on_experts(self, _module, args, kwargs, _output) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        index = args[1] if len(args) > 1 else kwargs.get("top_k_index", kwargs.get("router_indices"))
        weights = args[2] if len(args) > 2 else kwargs.get("top_k_weights", kwargs.get("routing_weights"))
        self._held.update(hidden=hidden.reshape(-1, hidden.shape[-1]), index=index, weights=weights)

    def _on_shared(self, _module, args, _output) -> None:
        self._held["shared"] = args[0].reshape(-1, args[0].shape[-1])

    def _on_shared_gate(self, _module, _args, output) -> None:
        self._held["shared_gate"] = torch.sigmoid(output.reshape(-1, output.shape[-1]).float())

    # --- reading ------------------------------------------------------------------------------
    def take(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward's (activations, gates, weighted), each [positions, layer width]: the
        activations (0 where an expert did not run), the weight each neuron's expert's output
        gets there (0 where it did not run; the shared expert's gate, or 1), and the activations
        times that weight. Clears what was held."""
        held, self._held = self._held, {}
        if "hidden" not in held:
            raise RuntimeError(f"layer {self.layer}'s experts were not called in the forward pass")
        hidden, index, weights = held["hidden"], held["index"], held["weights"]
        n, width = hidden.shape[0], self.experts.width
        acts = torch.zeros((n, width), dtype=torch.float32, device=hidden.device)
        gates = torch.zeros((n, width), dtype=torch.float32, device=hidden.device)
        weighted = torch.zeros((n, width), dtype=torch.float32, device=hidden.device)
        for group in self.experts.groups:
            span = slice(group.start, group.stop)
            if group.expert == SHARED:
                shared = held.get("shared")
                if shared is None:
                    raise RuntimeError(f"layer {self.layer}'s shared expert was not called")
                acts[:, span] = shared.float()
                gate = held.get("shared_gate")
                gates[:, span] = gate if gate is not None else 1.0
                weighted[:, span] = acts[:, span] * gates[:, span]
                continue
            rows, slot = torch.nonzero(index == int(group.expert), as_tuple=True)
            if not len(rows):
                continue
            values = self._expert_activations(int(group.expert), hidden[rows]).float()
            acts[rows, span] = values
            weight = _weight_of(weights, rows, slot, int(group.expert)).float().unsqueeze(1)
            # "Ran here" is a gate above 0: a weight that underflowed to 0 still counts as routed.
            gates[rows, span] = weight.clamp_min(torch.finfo(torch.float32).tiny)
            weighted[rows, span] = values * weight
        self.last_gates = gates
        return acts, gates, weighted

    def _expert_activations(self, expert: int, states: torch.Tensor) -> torch.Tensor:
        """As the experts module forms them: gate and up from gate_up_proj (its layout), then its
        own gating."""
        module = self.module
        matrix = module.gate_up_proj[expert]
        if getattr(module, "is_transposed", False):
            gate_up = states.to(matrix.dtype) @ matrix
        else:
            gate_up = F.linear(states.to(matrix.dtype), matrix)
        if getattr(module, "has_bias", False):
            gate_up = gate_up + module.gate_up_proj_bias[expert]
        return module._apply_gate(gate_up)

    def w_out(self) -> torch.Tensor:
        """The layer's output rows [width, d_model] from the model's own expert weights."""
        module, parts = self.module, []
        for group in self.experts.groups:
            if group.expert == SHARED:
                assert self.shared is not None
                parts.append(_unwrapped(self.shared.down_proj).weight.T)
                continue
            down = module.down_proj[int(group.expert)]
            parts.append(down if getattr(module, "is_transposed", False) else down.T)
        return torch.cat(parts).detach()


def _weight_of(weights: torch.Tensor, rows: torch.Tensor, slot: torch.Tensor, expert: int) -> torch.Tensor:
    """The router's weight for ``expert`` at ``rows`` (its ``slot`` among the k chosen)."""
    return weights.reshape(-1, weights.shape[-1])[rows, slot]


def layer_w_out(bridge, layer: int, experts: LayerExperts | None) -> torch.Tensor:
    """A layer's output rows [width, d_model] as the model holds them: a dense MLP's W_out, or a
    layer of experts' rows in flat order."""
    if experts is None:
        return bridge.blocks[layer].mlp.W_out.detach()
    return ExpertLayer(bridge, layer, experts).w_out()
