"""What a model file says about itself, read in milliseconds without loading any weights.

The command line checks options against these numbers (top-k against the vocabulary size) and
refuses a damaged file or a broken ``config.json`` before the terminal is taken over or any
weights are read. The GGUF reader here walks the header only: metadata values are kept for
scalars and strings, arrays are skipped (their lengths kept), tensor infos give the shapes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

GGUF_MAGIC = b"GGUF"
# GGUF metadata value types: id -> struct format of one scalar (8 = string, 9 = array).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# config.json fields that must be positive whole numbers when present.
_CONFIG_COUNTS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
)


@dataclass(frozen=True)
class GGUFTensorInfo:
    shape: tuple[int, ...]  # innermost dimension first (ggml order)
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    metadata: dict[str, object]  # scalars and strings as values; arrays as their length
    tensors: dict[str, tuple[int, ...]]  # name -> shape, innermost dimension first (ggml order)
    tensor_infos: dict[str, GGUFTensorInfo]
    data_start: int  # where tensor data begins in the file
    arrays: dict[str, list]  # the arrays asked for by name: strings as bytes, numbers as numbers


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.at + size > len(self.data):
            raise EOFError
        value = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += size
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        length = self.take("Q")
        if self.at + length > len(self.data):
            raise EOFError
        raw = self.data[self.at : self.at + length]
        self.at += length
        return raw.decode("utf-8", errors="replace")

    def array(self, kind: int, count: int) -> list:
        """``count`` items of ``kind``: strings as raw bytes (token strings are data), numbers as is."""
        if kind == _STRING:
            items = []
            for _ in range(count):
                length = self.take("Q")
                if self.at + length > len(self.data):
                    raise EOFError
                items.append(self.data[self.at : self.at + length])
                self.at += length
            return items
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata array type {kind}")
        fmt = f"<{count}{_SCALARS[kind]}"
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise EOFError
        items = list(struct.unpack_from(fmt, self.data, self.at))
        self.at += size
        return items

    def skip_value(self, kind: int) -> None:
        if kind == _STRING:
            length = self.take("Q")  # read before moving: `self.at += self.take(...)` loses the 8 bytes
            self.at += length
        elif kind in _SCALARS:
            self.at += struct.calcsize("<" + _SCALARS[kind])
        else:
            raise ValueError(f"unknown metadata type {kind}")
        if self.at > len(self.data):
            raise EOFError


def read_gguf_header(path: Path, arrays: tuple[str, ...] = ()) -> GGUFHeader:
    """The header of a GGUF file (version 2 or 3); a damaged or foreign file is a ``UserError``.
    The metadata arrays named in ``arrays`` (a vocabulary, say) are read too; others are skipped."""
    size = 4 << 20  # enough for most headers; a large vocabulary's needs a second, larger read
    while True:
        try:
            with path.open("rb") as handle:
                data = handle.read(size)
        except OSError as error:
            raise UserError(f"cannot read GGUF file {path}: {error.strerror}") from error
        try:
            return _parse_gguf_header(path, data, arrays)
        except EOFError:
            if len(data) < size:  # the whole file was read: it ends inside its header
                raise UserError(
                    f"cannot read GGUF file {path}: it ends inside its header; "
                    "check that the file is complete"
                ) from None
            size *= 4


def _parse_gguf_header(path: Path, data: bytes, wanted: tuple[str, ...] = ()) -> GGUFHeader:
    if len(data) < 24 or data[:4] != GGUF_MAGIC:
        what = "is empty" if not data else "does not start with the GGUF magic bytes"
        raise UserError(
            f"cannot read GGUF file {path}: it {what}; check that the file is a complete GGUF model"
        )
    cursor = _Cursor(data)
    cursor.at = 4
    try:
        version = cursor.take("I")
        if version not in (2, 3):
            raise UserError(f"cannot read GGUF file {path}: version {version} is not supported (2 or 3 are)")
        n_tensors, n_kv = cursor.take("Q"), cursor.take("Q")
        metadata: dict[str, object] = {}
        arrays: dict[str, list] = {}
        for _ in range(n_kv):
            key, kind = cursor.string(), cursor.take("I")
            if kind == _STRING:
                metadata[key] = cursor.string()
            elif kind == _ARRAY:
                item_kind, count = cursor.take("I"), cursor.take("Q")
                if key in wanted:
                    arrays[key] = cursor.array(item_kind, count)
                elif item_kind in _SCALARS:
                    cursor.at += count * struct.calcsize("<" + _SCALARS[item_kind])
                else:
                    for _ in range(count):
                        cursor.skip_value(item_kind)
                metadata[key] = count
            elif kind in _SCALARS:
                metadata[key] = cursor.take(_SCALARS[kind])
            else:
                raise ValueError(f"unknown metadata type {kind} for {key}")
        infos: dict[str, GGUFTensorInfo] = {}
        for _ in range(n_tensors):
            name, n_dims = cursor.string(), cursor.take("I")
            shape = tuple(cursor.take("Q") for _ in range(n_dims))
            infos[name] = GGUFTensorInfo(shape, cursor.take("I"), cursor.take("Q"))
    except (ValueError, struct.error) as error:
        raise UserError(f"cannot read GGUF file {path}: {error}; check that the file is complete") from None
    alignment = metadata.get("general.alignment", 32)
    alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
    data_start = -(-cursor.at // alignment) * alignment
    tensors = {name: info.shape for name, info in infos.items()}
    return GGUFHeader(metadata, tensors, infos, data_start, arrays)


def gguf_vocab_size(path: Path) -> int:
    header = read_gguf_header(path)
    for name in ("output.weight", "token_embd.weight"):
        if name in header.tensors:
            return int(header.tensors[name][-1])
    raise UserError(
        f"GGUF file {path} has neither output.weight nor token_embd.weight: it is not a language model"
    )


def read_config(folder: Path) -> dict:
    """``config.json`` of a checkpoint, with its size fields checked; the error names the field."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}; fix or replace the file") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object: fix or replace the file")
    for section in (config, _text_config(config)):
        for field in _CONFIG_COUNTS:
            value = section.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{path}: field {field!r} is {value!r}, expected a positive whole number")
    return config


def config_vocab_size(folder: Path) -> int | None:
    config = read_config(folder)
    return config.get("vocab_size") or _text_config(config).get("vocab_size")


def _text_config(config: dict) -> dict:
    """A multimodal config's language model section (``text_config``), or an empty one."""
    text = config.get("text_config")
    return text if isinstance(text, dict) else {}


def check_safetensors_file(path: Path) -> None:
    """Refuse, from its header alone, a ``.safetensors`` file that is cut short or not one: its
    first 8 bytes give the header's length, the header every tensor's byte range."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise UserError(
                    f"{path} is not a complete safetensors file ({size} bytes): copy or download it again"
                )
            (header_bytes,) = struct.unpack("<Q", head)
            if 8 + header_bytes > size:
                raise UserError(
                    f"{path} ends inside its header ({size} of at least {8 + header_bytes} bytes): "
                    "the file is truncated; copy or download it again"
                )
            if header_bytes > 100 << 20:
                raise UserError(f"{path} claims a {header_bytes}-byte header: it is not a safetensors file")
            header = json.loads(handle.read(header_bytes))
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} has a damaged header: it is not a complete safetensors file") from None
    if not isinstance(header, dict):
        raise UserError(f"{path} has a damaged header: it is not a complete safetensors file")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = entry["data_offsets"]
            end = max(end, int(stop))
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{path}: tensor {name!r} has no valid data_offsets in the header") from None
    needed = 8 + header_bytes + end
    if size < needed:
        raise UserError(
            f"{path} is truncated: it holds {size:,} of the {needed:,} bytes its header describes; "
            "copy or download it again"
        )


def gguf_layer_count(path: Path) -> int | None:
    header = read_gguf_header(path)
    count = header.metadata.get(f"{header.metadata.get('general.architecture')}.block_count")
    return count if isinstance(count, int) and count > 0 else None


def config_layer_count(folder: Path) -> int | None:
    config = read_config(folder)
    for section in (config, _text_config(config)):
        for field in ("num_hidden_layers", "n_layer", "num_layers"):
            value = section.get(field)
            if isinstance(value, int):
                return value
    return None


def gguf_widths(path: Path) -> tuple[int | None, int | None]:
    """(d_model, the dense MLP's width) from a GGUF header's metadata, None where it does not say."""
    metadata = read_gguf_header(path).metadata
    arch = metadata.get("general.architecture")
    found = [metadata.get(f"{arch}.{key}") for key in ("embedding_length", "feed_forward_length")]
    return tuple(value if isinstance(value, int) and value > 0 else None for value in found)  # type: ignore[return-value]


def config_widths(folder: Path) -> tuple[int | None, int | None]:
    """(d_model, the dense MLP's width) from a checkpoint's config, None where it does not say."""
    config = read_config(folder)
    widths: list[int | None] = [None, None]
    for section in (config, _text_config(config)):
        names_of = (("hidden_size", "n_embd", "d_model"), ("intermediate_size", "n_inner"))
        for slot, names in enumerate(names_of):
            for name in names:
                value = section.get(name)
                if widths[slot] is None and isinstance(value, int) and value > 0:
                    widths[slot] = value
    return widths[0], widths[1]
