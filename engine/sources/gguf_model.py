"""A GGUF file's model built to run, its tensors read one at a time.

transformers loads a GGUF checkpoint through the gguf package's reader, which maps the whole file
and makes a Python object of every token and merge, and keeps them while it dequantises every tensor
into a second, complete state dict: the bundled model's load peaked about 250 MiB above the model
itself. Here the model is built from its configuration and each tensor is read from the file,
dequantised, renamed and permuted exactly as transformers does it (its own name map and tensor
processors), and copied into place before the next is read. Where a file holds something this path
does not place, the caller falls back to transformers' own loader.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.sources.header import GGUFHeader, read_gguf_header

_SLAB_ROWS = 4096
_NAME_TABLE_LOCK = threading.Lock()


class UnplacedTensors(Exception):
    """The file's tensors do not fill the model this path builds (an architecture it does not know)."""


def dequantise(data: np.ndarray, kind) -> np.ndarray:
    """One tensor's stored bytes (as the gguf package lays them out) as float32, a slab of rows at
    a time into one array: the peak is the result plus one slab."""
    import gguf

    if data.ndim < 2 or data.shape[0] <= _SLAB_ROWS:
        array = gguf.quants.dequantize(data, kind)
        # Unquantised tensors come back as read-only views of what was read: copy them out.
        return np.array(array, dtype=np.float32, order="C", copy=not array.flags.writeable)
    first = gguf.quants.dequantize(data[:_SLAB_ROWS], kind)
    out = np.empty((data.shape[0], *first.shape[1:]), dtype=np.float32)
    out[:_SLAB_ROWS] = first
    for start in range(_SLAB_ROWS, data.shape[0], _SLAB_ROWS):
        out[start : start + _SLAB_ROWS] = gguf.quants.dequantize(data[start : start + _SLAB_ROWS], kind)
    return out


def _read_tensor(handle, header: GGUFHeader, name: str) -> np.ndarray:
    """One tensor from the open file as float32 in numpy order (read, not mapped: its pages are
    the process's own only while it is being placed)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import quant_shape_to_byte_shape

    info = header.tensor_infos[name]
    kind = GGMLQuantizationType(info.ggml_type)
    block, type_size = GGML_QUANT_SIZES[kind]
    shape = tuple(reversed(info.shape))
    n_bytes = int(np.prod(info.shape)) * type_size // block
    handle.seek(header.data_start + info.offset)
    raw = np.frombuffer(handle.read(n_bytes), dtype=np.uint8)
    if len(raw) != n_bytes:
        raise UserError(f"GGUF file {handle.name} ends inside tensor {name}: check that the file is complete")
    plain = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    if kind.name in plain:
        return np.array(raw.view(plain[kind.name]).reshape(shape), dtype=np.float32)
    return dequantise(raw.reshape(quant_shape_to_byte_shape(shape, kind)), kind)


def _weights_map(model, processor) -> dict[str, str]:
    """transformers' own map from GGUF tensor names to the model's (``get_gguf_hf_weights_map``),
    with gguf's name table built once. The library walks every submodule and builds the table
    afresh at each (397 times, about 10 s, for the bundled model); the table depends only on the
    architecture and the number of blocks, so one per call gives the same map."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

    # The library imports the table's builder from gguf at each call: memoised there, for this
    # call only (the lock keeps two loads from restoring each other's builder).
    with _NAME_TABLE_LOCK:
        builder = gguf.get_tensor_name_map
        gguf.get_tensor_name_map = functools.cache(builder)
        try:
            return get_gguf_hf_weights_map(model, processor)
        finally:
            gguf.get_tensor_name_map = builder


def load_gguf_model(path: Path):
    """The causal language model in the GGUF file ``path``, in float32 on the CPU, evaluation mode;
    its parameters equal those transformers' own GGUF loader gives. Raises ``UnplacedTensors``
    where the file's tensors do not fill the model (the caller loads it the usual way then)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    header = read_gguf_header(path)
    architecture = str(header.metadata["general.architecture"])
    settings = config.to_dict()
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=settings)
    names = _weights_map(model, processor)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    placed: set[str] = set()
    parsed: dict = {"config": settings, "tensors": {}}
    with torch.no_grad(), path.open("rb") as handle:
        for gguf_name in header.tensor_infos:
            weights = _read_tensor(handle, header, gguf_name)
            result = processor.process(
                weights=weights, name=gguf_name, tensor_key_mapping=names, parsed_parameters=parsed
            )
            if parsed["tensors"]:  # a processor that gathers tensors (experts) rather than renaming them
                raise UnplacedTensors(f"{architecture}: tensors gathered across the file")
            if result.name not in names:
                continue
            target = names[result.name]
            if target not in parameters or tuple(parameters[target].shape) != result.weights.shape:
                raise UnplacedTensors(f"{architecture}: {gguf_name} has no place in the model")
            parameters[target].copy_(torch.from_numpy(np.ascontiguousarray(result.weights)))
            placed.add(target)
    shared = {id(tensor) for name, tensor in parameters.items() if name in placed}
    missing = [name for name, tensor in parameters.items() if id(tensor) not in shared]
    if missing:
        raise UnplacedTensors(f"{architecture}: the file fills no {missing[0]}")
    return model.eval()
