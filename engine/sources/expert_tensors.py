"""Where a mixture-of-experts checkpoint keeps each expert's weights, read from the file names.

TransformerLens wraps a routed MLP whole (its MoEBridge has no per-expert weights), so the experts
are found in the checkpoint itself. The layouts known here, under a block's MLP module (``mlp``,
Mixtral's ``block_sparse_moe``, Llama-4's ``feed_forward``):

- one tensor per expert and projection: ``experts.E.down_proj.weight`` (Qwen2/3-MoE, OLMoE,
  DeepSeek), ``experts.E.w2.weight`` (Mixtral; w1 the gate, w3 up), Linear layout [out, in];
- fused tensors holding every expert: ``experts.down_proj`` [E, d_expert, d_model] as gpt-oss
  writes it (or [E, d_model, d_expert] as transformers 5 holds it in memory) and
  ``experts.gate_up_proj`` (gpt-oss: [E, d_model, 2 d_expert], gate and up interleaved);
- a shared expert beside the routed ones: ``shared_expert`` (Qwen2-MoE) or ``shared_experts``
  (DeepSeek), a dense MLP;
- dense layers mixed in (Qwen3-MoE ``mlp_only_layers``, DeepSeek ``first_k_dense_replace``): the
  MLP's own ``down_proj``;
- the router: ``gate.weight`` [E, d_model] (``router.weight`` with a bias in gpt-oss).

One expert is read at a time (a slice of a fused tensor reads only that expert's bytes), so a
layer's experts are never all held in float32.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.data.experts import SHARED, ExpertLabel, LayerExperts
from engine.data.model import MlpInputs
from engine.errors import UserError

MLP_MODULES = ("mlp", "block_sparse_moe", "feed_forward")
_DOWN, _UP, _GATE = ("down_proj", "w2"), ("up_proj", "w3"), ("gate_proj", "w1")
_SHARED_MODULES = ("shared_expert", "shared_experts")
_ROUTERS = ("gate", "router")
# config.json keys that give a model's routed expert count and its experts per token
EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
PER_TOKEN_KEYS = ("num_experts_per_tok", "experts_per_token", "moe_topk")

# reader(stored name, index along the first axis or None for the whole tensor) -> float32 array
Reader = Callable[[str, "int | None"], np.ndarray]
ShapeOf = Callable[[str], tuple[int, ...]]
RouterWeights = tuple[np.ndarray, dict[str, np.ndarray]]


def routed_expert_count(config: dict) -> int:
    """The routed experts config.json names (0 for a dense model); a text config nested in a
    multimodal one is read too."""
    for source in (config, config.get("text_config") or {}):
        for key in EXPERT_COUNT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return 0


def experts_per_token(config: dict) -> int:
    for source in (config, config.get("text_config") or {}):
        for key in PER_TOKEN_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return 0


@dataclass
class _Projection:
    """One projection of one MLP: a stored 2-D tensor, or expert ``index`` of a fused 3-D one."""

    name: str
    index: int | None = None


@dataclass
class _Mlp:
    """A dense MLP's (or one expert's) projections; ``up`` holds gate and up fused when ``fused``."""

    down: _Projection
    up: _Projection | None = None
    gate: _Projection | None = None
    gate_up_interleaved: bool | None = None  # fused gate/up: interleaved (gpt-oss) or halves


@dataclass
class LayerTensors:
    """A layer's MLP as its files hold it."""

    dense: _Mlp | None = None
    routed: dict[int, _Mlp] = field(default_factory=dict)
    shared: _Mlp | None = None
    router: dict[str, str] = field(default_factory=dict)  # weight, bias, e_score_correction_bias
    down_rows_first: bool = False  # fused down_proj stored [E, d_expert, d_model]


class ExpertTensors:
    """The experts of every layer of a checkpoint whose config names routed experts."""

    def __init__(
        self,
        names: list[str],
        blocks: str,
        n_layers: int,
        d_model: int,
        architecture: str,
        config: dict,
        shape_of: ShapeOf,
        read: Reader,
    ):
        self.d_model, self.architecture = d_model, architecture
        self._shape_of, self._read = shape_of, read
        self.n_experts = routed_expert_count(config)
        self.per_token = experts_per_token(config)
        self.layers = [LayerTensors() for _ in range(n_layers)]
        self._index(names, blocks, n_layers)
        self.layer_experts = tuple(self._layer_experts(layer) for layer in range(n_layers))
        fewest = min((e.n_routed for e in self.layer_experts if e is not None), default=0)
        if self.per_token > fewest > 0:
            key = next(k for k in PER_TOKEN_KEYS if k in config or k in (config.get("text_config") or {}))
            raise UserError(
                f"config.json's {key} is {self.per_token}, more than the {fewest} experts a layer has"
            )
        if all(experts is None for experts in self.layer_experts):
            raise UserError(
                f"config.json names {self.n_experts} experts per layer, but no layer's files hold "
                f"expert tensors (looked for {blocks}.N.mlp.experts.*): the checkpoint is incomplete"
            )

    # --- finding the tensors --------------------------------------------------------------------
    def _index(self, names: list[str], blocks: str, n_layers: int) -> None:
        prefixes = {blocks, blocks.partition(".")[2]} - {""}
        pattern = re.compile(
            rf"^(?:{'|'.join(re.escape(p) for p in prefixes)})\.(\d+)\.({'|'.join(MLP_MODULES)})\.(.+)$"
        )
        for name in names:
            match = pattern.match(name)
            if match is None or int(match.group(1)) >= n_layers:
                continue
            self._place(self.layers[int(match.group(1))], match.group(3), name)

    def _place(self, layer: LayerTensors, rest: str, name: str) -> None:
        parts = rest.split(".")
        if parts[0] == "experts":
            self._place_expert(layer, parts[1:], name)
        elif parts[0] in _SHARED_MODULES and len(parts) == 3 and parts[2] == "weight":
            layer.shared = _with_projection(layer.shared, parts[1], name)
        elif parts[0] in _ROUTERS and len(parts) == 2:
            layer.router[parts[1]] = name
        elif len(parts) == 2 and parts[1] == "weight":
            layer.dense = _with_projection(layer.dense, parts[0], name)

    def _place_expert(self, layer: LayerTensors, parts: list[str], name: str) -> None:
        if len(parts) == 3 and parts[0].isdigit() and parts[2] == "weight":
            index = int(parts[0])
            layer.routed[index] = _with_projection(layer.routed.get(index), parts[1], name)
        elif len(parts) == 1 and parts[0] in ("down_proj", "gate_up_proj", "gate_proj", "up_proj"):
            self._place_fused(layer, parts[0], name)
        elif len(parts) == 1 and parts[0] in ("down_proj_blocks", "gate_up_proj_blocks"):
            # gpt-oss's MXFP4: the blocks stand for the tensor (engine.sources.mxfp4_blocks)
            self._place_fused(layer, parts[0].removesuffix("_blocks"), name)

    def _place_fused(self, layer: LayerTensors, part: str, name: str) -> None:
        shape = self._shape_of(name)
        if len(shape) != 3:
            raise UserError(f"{name} has shape {list(shape)}, expected [experts, rows, columns]")
        for index in range(shape[0]):
            mlp = layer.routed.setdefault(index, _Mlp(_Projection("")))
            projection = _Projection(name, index)
            if part == "down_proj":
                mlp.down = projection
            else:
                _set_fused_input(mlp, part, projection, self.architecture)

    # --- the layer's experts --------------------------------------------------------------------
    def _layer_experts(self, layer: int) -> LayerExperts | None:
        tensors = self.layers[layer]
        if not tensors.routed:
            return None
        if tensors.dense is not None and tensors.dense.down.name:
            raise UserError(f"{tensors.dense.down.name} is a dense MLP beside experts in layer {layer}")
        if self.n_experts and sorted(tensors.routed) != list(range(self.n_experts)):
            raise UserError(self._count_mismatch(tensors))
        sizes: list[tuple[ExpertLabel, int]] = []
        first_size = None
        for index in sorted(tensors.routed):
            mlp = tensors.routed[index]
            if not mlp.down.name:
                raise UserError(f"layer {layer}'s expert {index} has input weights but no down projection")
            size = self._expert_size(tensors, mlp)
            if first_size is not None and size != first_size:
                raise UserError(
                    f"{mlp.down.name} has {size} neurons where the layer's other experts have {first_size}"
                )
            first_size = size
            sizes.append((index, size))
        if tensors.shared is not None:
            sizes.append((SHARED, self._expert_size(tensors, tensors.shared)))
        return LayerExperts.from_sizes(sizes)

    def _count_mismatch(self, tensors: LayerTensors) -> str:
        """What is wrong when the files hold other experts than config.json names, naming a tensor."""
        missing = sorted(set(range(self.n_experts)) - set(tensors.routed))
        some = tensors.routed[min(tensors.routed)].down
        if some.index is not None:  # fused: the tensor holds too few or too many experts
            held = len(tensors.routed)
            return f"{some.name} holds {held} experts, but config.json names {self.n_experts}"
        if missing:
            lacking = re.sub(r"\.experts\.\d+\.", f".experts.{missing[0]}.", some.name)
            return f"config.json names {self.n_experts} experts, but the files hold no {lacking}"
        extra = tensors.routed[max(tensors.routed)].down.name
        return f"{extra} is beyond the {self.n_experts} experts config.json names"

    def _expert_size(self, tensors: LayerTensors, mlp: _Mlp) -> int:
        shape = self._shape_of(mlp.down.name)
        rows, cols = shape[-2:]
        d_model = self.d_model
        if mlp.down.index is None:  # Linear [d_model, d_expert]
            if rows != d_model:
                raise UserError(f"{mlp.down.name} has shape {list(shape)}: expected {d_model} rows (d_model)")
            return cols
        # A fused tensor: [E, d_expert, d_model] (gpt-oss) or [E, d_model, d_expert]; when both are
        # d_model, gpt-oss's layout is the one its files use, transformers' own otherwise.
        if cols == d_model and (rows != d_model or self.architecture.startswith("GptOss")):
            tensors.down_rows_first = True
            return rows
        if rows == d_model:
            return cols
        raise UserError(f"{mlp.down.name} has shape {list(shape)}: neither side is d_model {d_model}")

    def stored_names(self) -> set[str]:
        """Every tensor the experts are read from."""
        names: set[str] = set()
        for tensors in self.layers:
            mlps = [*tensors.routed.values(), *([tensors.shared] if tensors.shared else [])]
            for mlp in mlps:
                names.update(p.name for p in (mlp.down, mlp.up, mlp.gate) if p is not None and p.name)
        return names

    # --- reading --------------------------------------------------------------------------------
    def down_rows(self, layer: int, expert: ExpertLabel) -> np.ndarray:
        """One expert's output rows as float32 [d_expert, d_model] (W_out's orientation)."""
        tensors = self.layers[layer]
        mlp = tensors.shared if expert == SHARED else tensors.routed[int(expert)]
        assert mlp is not None
        matrix = self._read(mlp.down.name, mlp.down.index)
        if mlp.down.index is not None and tensors.down_rows_first:
            return np.ascontiguousarray(matrix)
        return np.ascontiguousarray(matrix.T)

    def input_rows(self, layer: int, expert: ExpertLabel) -> MlpInputs:
        """One expert's input rows, [d_expert, d_model] each (gate and up)."""
        tensors = self.layers[layer]
        mlp = tensors.shared if expert == SHARED else tensors.routed[int(expert)]
        assert mlp is not None
        if mlp.up is None:
            raise UserError(f"layer {layer}'s expert {expert} has no input projection in the files")
        up = self._read(mlp.up.name, mlp.up.index)
        if mlp.gate_up_interleaved is not None:  # fused gate and up
            rows = up if up.shape[0] != self.d_model else up.T  # as [2 d_expert, d_model]
            if mlp.gate_up_interleaved:
                gate, up_rows = rows[0::2], rows[1::2]
            else:
                gate, up_rows = np.split(rows, 2)
            return MlpInputs(up=np.ascontiguousarray(up_rows), gate=np.ascontiguousarray(gate))
        if mlp.gate is None:
            return MlpInputs(up=_rows(up, self.d_model))
        gate_rows = self._read(mlp.gate.name, mlp.gate.index)
        return MlpInputs(up=_rows(up, self.d_model), gate=_rows(gate_rows, self.d_model))

    def router(self, layer: int) -> RouterWeights | None:
        """The router's weight [experts, d_model] and its other tensors (a bias, DeepSeek's
        e_score_correction_bias) by name, or None for a dense layer."""
        tensors = self.layers[layer]
        if "weight" not in tensors.router or not tensors.routed:
            return None
        extras = {part: self._read(name, None) for part, name in tensors.router.items() if part != "weight"}
        return self._read(tensors.router["weight"], None), extras


def _rows(matrix: np.ndarray, d_model: int) -> np.ndarray:
    """A Linear input projection [d_expert, d_model] as stored (or transposed when stored so)."""
    if matrix.shape[1] == d_model:
        return np.ascontiguousarray(matrix)
    return np.ascontiguousarray(matrix.T)


def _with_projection(mlp: _Mlp | None, module: str, name: str) -> _Mlp:
    mlp = mlp or _Mlp(_Projection(""))
    if module in _DOWN:
        mlp.down = _Projection(name)
    elif module in _UP:
        mlp.up = _Projection(name)
    elif module in _GATE:
        mlp.gate = _Projection(name)
    return mlp


def _set_fused_input(mlp: _Mlp, part: str, projection: _Projection, architecture: str) -> None:
    if part == "gate_up_proj":
        mlp.up = projection
        mlp.gate_up_interleaved = architecture.startswith("GptOss")
    elif part == "up_proj":
        mlp.up = projection
    else:
        mlp.gate = projection
