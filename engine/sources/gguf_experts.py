"""A GGUF file's experts, as llama.cpp's converters store them: per layer ``blk.N.ffn_down_exps``
([experts, d_model, d_expert] in numpy order), ``ffn_gate_exps`` and ``ffn_up_exps`` ([experts,
d_expert, d_model]), a shared expert's ``ffn_down_shexp`` / ``ffn_gate_shexp`` / ``ffn_up_shexp``,
the router ``ffn_gate_inp`` ([experts, d_model]); a layer without ``ffn_down_exps`` is dense.
One expert's slice of a stacked tensor is dequantised at a time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.data.experts import SHARED, ExpertLabel, LayerExperts
from engine.data.model import MlpInputs
from engine.errors import UserError

# (tensor name) -> (its data as laid out in numpy order, its quantisation type)
TensorData = Callable[[str], tuple[np.ndarray, object]]
Dequantise = Callable[[str, np.ndarray, object], np.ndarray]


def has_experts(tensors) -> bool:
    return any(name.endswith(".ffn_down_exps.weight") for name in tensors)


class GGUFExperts:
    def __init__(self, tensors, n_layers: int, expert_count: int, data: TensorData, dequantise: Dequantise):
        self._tensors, self._data, self._dequantise = tensors, data, dequantise
        self.layer_experts = tuple(self._layer(layer, expert_count) for layer in range(n_layers))

    def _layer(self, layer: int, expert_count: int) -> LayerExperts | None:
        down = f"blk.{layer}.ffn_down_exps.weight"
        if down not in self._tensors:
            return None
        shape = tuple(reversed(self._tensors[down].shape))  # numpy order: [experts, d_model, d_expert]
        if len(shape) != 3:
            raise UserError(f"{down} has shape {list(shape)}, expected [experts, d_model, d_expert]")
        if expert_count and shape[0] != expert_count:
            raise UserError(f"{down} holds {shape[0]} experts, but the file's expert_count is {expert_count}")
        sizes: list[tuple[ExpertLabel, int]] = [(e, int(shape[2])) for e in range(shape[0])]
        shared = f"blk.{layer}.ffn_down_shexp.weight"
        if shared in self._tensors:
            sizes.append((SHARED, int(self._tensors[shared].shape[0])))  # gguf order: [d_shared, d_model]
        return LayerExperts.from_sizes(sizes)

    def _slice(self, name: str, expert: ExpertLabel) -> np.ndarray:
        """One expert's matrix as stored (numpy order), dequantised."""
        if expert == SHARED:
            stacked, kind = self._data(name.replace("_exps.", "_shexp."))
            return self._dequantise(name, stacked, kind)
        stacked, kind = self._data(name)
        return self._dequantise(name, stacked[int(expert)], kind)

    def down_rows(self, layer: int, expert: ExpertLabel) -> np.ndarray:
        """[d_expert, d_model] float32: the expert's W_out rows."""
        return np.ascontiguousarray(self._slice(f"blk.{layer}.ffn_down_exps.weight", expert).T)

    def input_rows(self, layer: int, expert: ExpertLabel) -> MlpInputs:
        up = self._slice(f"blk.{layer}.ffn_up_exps.weight", expert)
        gate_name = f"blk.{layer}.ffn_gate_exps.weight"
        gate = self._slice(gate_name, expert) if gate_name in self._tensors else None
        return MlpInputs(
            up=np.ascontiguousarray(up), gate=None if gate is None else np.ascontiguousarray(gate)
        )

    def router(self, layer: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        name = f"blk.{layer}.ffn_gate_inp.weight"
        if name not in self._tensors:
            return None
        data, kind = self._data(name)
        return self._dequantise(name, data, kind), {}
