"""Sizing a local GGUF file from its own header (the `gguf` package that ships with llama.cpp).

The header gives the exact bytes of every tensor (so mixed quantizations need no bits-per-weight
guess) and the architecture keys the KV cache depends on.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from localroute.config.telemetry import state_dir
from localroute.resources.catalog import ModelSpec

# Parsing a header reads every metadata array (a 49K-token vocabulary is most of it): seconds on
# a busy machine. Every client sizes its instances at start, so the facts are kept on disk per
# file path, size and modification time.
CACHE_NAME = "gguf_facts.json"


class GGUFFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    spec: ModelSpec
    weight_bytes: int  # sum of the tensors' data, what llama.cpp maps as the model buffer
    file_type: str  # the quantization the file declares (e.g. Q4_1)
    bits_per_weight: float


class GGUFError(ValueError):
    """A file that is not a readable GGUF model."""


def read_gguf(path: str | Path) -> GGUFFacts:
    """The planner's facts for a GGUF file (cached per path and modification time)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise GGUFError(f"GGUF file '{file}' does not exist; pass the path of a .gguf model")
    stat = file.stat()
    return _cached(str(file.resolve()), stat.st_mtime_ns, stat.st_size)


def _cache_file() -> Path:
    return state_dir() / CACHE_NAME


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


@lru_cache(maxsize=16)
def _cached(path: str, mtime: int, size: int) -> GGUFFacts:
    stamp = f"{mtime}:{size}"
    entry = _load_cache().get(path)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        try:
            return GGUFFacts.model_validate(entry["facts"])
        except (ValidationError, KeyError):
            pass  # an older layout: read the file again
    facts = _read(path)
    cache = _load_cache()
    cache[path] = {"stamp": stamp, "facts": facts.model_dump()}
    try:  # best effort: a read-only state dir only costs the next process a parse
        target = _cache_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(target)
    except OSError:
        pass
    return facts


# The header walk is written by hand on purpose: gguf.GGUFReader builds a numpy view of every
# element of every metadata array, which takes minutes for Gemma 3's 262K-token vocabulary on a
# busy two-core machine; here arrays are skipped (numbers by size, strings by their lengths)
# and only the architecture keys and the tensor table are read. The type tables still come
# from the `gguf` package (value types, GGML block sizes).
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Walker:
    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        text = bytes(self.data[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, kind: int, keep: bool) -> Any:
        if kind in _SCALAR:
            return self.take(_SCALAR[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown metadata value type {kind}")
        item, count = self.take("<I"), self.take("<Q")
        if item in _SCALAR and not keep:
            self.pos += struct.calcsize(_SCALAR[item]) * count
            return None
        if item == _STRING and not keep:
            for _ in range(count):
                length = self.take("<Q")  # each string: its length, then its bytes
                self.pos += length
            return None
        return [self.value(item, keep) for _ in range(count)]


def _read(path: str) -> GGUFFacts:
    import gguf  # the type tables only

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            w = _Walker(data)
            if bytes(data[:4]) != b"GGUF":
                raise ValueError("no GGUF magic")
            w.pos = 4
            version = w.take("<I")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} is not supported (2 or 3)")
            n_tensors, n_kv = w.take("<Q"), w.take("<Q")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                name = w.string()
                kind = w.take("<I")
                meta[name] = w.value(kind, keep=kind != _ARRAY)
            weight_bytes = n_params = 0
            for _ in range(n_tensors):
                w.string()
                dims = [w.take("<Q") for _ in range(w.take("<I"))]
                ggml_type = w.take("<I")
                w.take("<Q")  # offset
                elements = 1
                for d in dims:
                    elements *= d
                block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
                weight_bytes += elements // block * size
                n_params += elements
    except (ValueError, OSError, struct.error, KeyError) as exc:
        raise GGUFError(f"'{path}' is not a readable GGUF file: {exc}") from None
    arch = meta.get("general.architecture")
    if not arch:
        raise GGUFError(f"'{path}' has no general.architecture key; is it a model file?")

    def key(name: str) -> Any:
        return meta.get(f"{arch}.{name}")

    layers = int(key("block_count") or 0)
    q_heads = int(key("attention.head_count") or 0)
    kv_heads = int(key("attention.head_count_kv") or q_heads)
    embedding = int(key("embedding_length") or 0)
    head_dim = int(key("attention.key_length") or (embedding // q_heads if q_heads else 0))
    if not (layers and q_heads and head_dim):
        raise GGUFError(
            f"'{path}' ({arch}) lacks {arch}.block_count / attention.head_count / "
            "embedding_length: the planner cannot size its KV cache"
        )
    spec = ModelSpec(
        key=Path(path).stem,
        params=float(n_params),
        layers=layers,
        kv_layers=layers,
        q_heads=q_heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        native_context=int(key("context_length") or 0),
        sources={"all figures": f"GGUF header of {path}"},
    )
    return GGUFFacts(
        path=path,
        spec=spec,
        weight_bytes=weight_bytes,
        file_type=_file_type_name(meta.get("general.file_type")),
        bits_per_weight=8 * weight_bytes / n_params if n_params else 0.0,
    )


def _file_type_name(value: Any) -> str:
    import gguf

    if value is None:
        return "unknown"
    try:
        return str(gguf.LlamaFileType(int(value)).name).removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {value}"
