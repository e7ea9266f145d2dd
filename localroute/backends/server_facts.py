"""What a model server says about its models, read from each server's own JSON answers.

Pure parsing, no HTTP (discovery.py does the talking). Every body is untrusted: a field of the
wrong type is treated as absent, strings are cut short and stripped of control characters, and
at most `MAX_MODELS` models are kept per server.

Shapes (from each server's documentation; see docs/init.md):
- LM Studio `GET /api/v1/models` (0.4+): `models[]` with `key`, `type`, `architecture`,
  `quantization.name`, `size_bytes`, `params_string`, `loaded_instances[].config.context_length`,
  `max_context_length`, `capabilities.trained_for_tool_use`; `GET /api/v0/models`: `data[]`
  with `id`, `type`, `arch`, `quantization`, `state`, `max_context_length`, `capabilities`.
- Ollama `GET /api/tags` (`models[]`: `name`, `size`, `details.parameter_size`,
  `details.quantization_level`), `GET /api/ps` (loaded: `context_length`), `POST /api/show`
  (`model_info` with `general.parameter_count`, `<arch>.context_length`, `<arch>.block_count`,
  `<arch>.attention.head_count[_kv]`; `capabilities`; `parameters` with `num_ctx`).
- llama.cpp `llama-server` `GET /props` (`default_generation_settings.n_ctx` per slot,
  `total_slots`, `model_path`) and `GET /v1/models` `data[].meta` (`n_ctx_train`, `n_params`,
  `size`).
- vLLM `GET /v1/models` `data[].max_model_len`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

MAX_MODELS = 200
MAX_TEXT = 200
LLAMA_CPP_PYTHON_DEFAULT_CTX = 2048  # llama_cpp.server's n_ctx when none is given

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUANT = re.compile(
    r"(?i)(?:^|[-_.:/ ])(IQ\d_[A-Z]+|Q\d_K_[SML]|Q\d_K|Q\d_\d|Q\d|BF16|F16|F32|FP16|\d-?bit)"
    r"(?=$|[-_.: /])"
)
_PARAMS = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*$")
_NUM_CTX = re.compile(r"(?m)^\s*num_ctx\s+(\d+)\s*$")


class ArchFacts(BaseModel):
    """Enough of a model's architecture to size its KV cache (Ollama's /api/show gives it)."""

    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int


class FoundModel(BaseModel):
    """One model a server serves, with what the server says about it (None: not reported)."""

    id: str
    type: str = "llm"  # llm | vlm | embedding
    params: float | None = None
    params_label: str | None = None
    size_bytes: int | None = None  # the weights' size as the server reports it (file size)
    quantization: str | None = None
    context_length: int | None = None  # what the server holds (or will hold) for one request
    context_fixed: bool = False  # the server decides it (True) or a load can choose it (False)
    context_source: str = ""  # where context_length comes from, said in the written file
    max_context: int | None = None  # the model's own limit (trained / maximum context)
    loaded: bool | None = None
    slots: int | None = None  # parallel requests the server runs for this model
    supports_tools: bool | None = None
    arch: str | None = None
    arch_facts: ArchFacts | None = None
    gguf_path: str | None = None  # the file a llama.cpp server serves (sizable from its header)
    notes: list[str] = Field(default_factory=list)


def text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A clean one-line string, or None for anything else."""
    if not isinstance(value, str):
        return None
    cleaned = _CONTROL.sub(" ", value).strip()
    return cleaned[:limit] or None


def ident(value: Any, limit: int = 1000) -> str | None:
    """A model id exactly as the server spells it, or None: an id with control characters or
    of absurd length is dropped, never altered (an altered id names a model that does not
    exist)."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return None
    return None if _CONTROL.search(value) else value


def count(value: Any) -> int | None:
    """A positive integer, or None (bools, negatives, strings and fractions are not counts)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, float) and value > 0 and value.is_integer():
        return int(value)
    return None


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    return value[:MAX_MODELS] if isinstance(value, list) else []


def parse_params(label: str | None) -> float | None:
    """'4.0B' -> 4e9, '135M' -> 1.35e8; None when the label is not a count."""
    match = _PARAMS.match(label or "")
    if not match:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[match.group(2).upper()]
    return float(match.group(1)) * scale


def quant_from_name(name: str | None) -> str | None:
    """The quantization a GGUF file or model name spells (`...-Q4_K_M.gguf` -> Q4_K_M)."""
    match = _QUANT.search(name or "")
    return match.group(1).upper().replace("FP16", "F16") if match else None


def lmstudio_v1(body: Any) -> list[FoundModel] | None:
    """LM Studio 0.4+ `GET /api/v1/models`, or None when the body is not that."""
    models = mapping(body).get("models")
    if not isinstance(models, list):
        return None
    out = []
    for raw in items(models):
        m = mapping(raw)
        key = ident(m.get("key"))
        if key is None:
            continue
        instances = [i for i in items(m.get("loaded_instances")) if isinstance(i, dict)]
        config = mapping(instances[0].get("config")) if instances else {}
        label = text(m.get("params_string"), 20)
        context = count(config.get("context_length"))
        out.append(FoundModel(
            id=key,
            type="embedding" if str(m.get("type", "")).startswith("embed") else "llm",
            params=parse_params(label), params_label=label,
            size_bytes=count(m.get("size_bytes")),
            quantization=text(mapping(m.get("quantization")).get("name"), 40),
            context_length=context, context_fixed=context is not None,
            context_source="the loaded instance's context" if context else "",
            max_context=count(m.get("max_context_length")),
            loaded=bool(instances), slots=count(config.get("parallel")),
            supports_tools=_flag(mapping(m.get("capabilities")).get("trained_for_tool_use")),
            arch=text(m.get("architecture"), 60),
        ))
    return out


def lmstudio_v0(body: Any) -> list[FoundModel] | None:
    """LM Studio 0.3.6+ `GET /api/v0/models`, or None when the body is not that."""
    data = mapping(body).get("data")
    if not isinstance(data, list):
        return None
    out = []
    for raw in items(data):
        m = mapping(raw)
        model_id = ident(m.get("id"))
        if model_id is None:
            continue
        loaded = m.get("state") == "loaded"
        context = count(m.get("loaded_context_length")) if loaded else None
        caps = [c for c in items(m.get("capabilities")) if isinstance(c, str)]
        out.append(FoundModel(
            id=model_id,
            type="embedding" if str(m.get("type", "")).startswith("embed") else "llm",
            quantization=text(m.get("quantization"), 40),
            context_length=context, context_fixed=context is not None,
            context_source="the loaded instance's context" if context else "",
            max_context=count(m.get("max_context_length")), loaded=loaded,
            supports_tools=True if "tool_use" in caps else None,
            arch=text(m.get("arch"), 60),
        ))
    return out


def ollama(tags: Any, ps: Any, shows: dict[str, Any]) -> list[FoundModel] | None:
    """Ollama `/api/tags` + `/api/ps` + `/api/show` per model, or None when `tags` is not that."""
    models = mapping(tags).get("models")
    if not isinstance(models, list):
        return None
    running = {ident(mapping(r).get("name")): mapping(r) for r in items(mapping(ps).get("models"))}
    out = []
    for raw in items(models):
        m = mapping(raw)
        name = ident(m.get("name"))
        if name is None:
            continue
        details = mapping(m.get("details"))
        show = mapping(shows.get(name))
        info = mapping(show.get("model_info"))
        arch = text(info.get("general.architecture"), 60) or text(details.get("family"), 60)
        caps = [c for c in items(show.get("capabilities")) if isinstance(c, str)]
        label = text(details.get("parameter_size"), 20)
        live = running.get(name)
        context, source = None, ""
        if live is not None and count(live.get("context_length")):
            context, source = count(live.get("context_length")), "the loaded model's context"
        else:
            num_ctx = _NUM_CTX.search(str(show.get("parameters") or ""))
            if num_ctx:
                context, source = int(num_ctx.group(1)), "num_ctx of the model's Modelfile"
        embedding = ("embedding" in caps and "completion" not in caps) or "embed" in name.lower()
        out.append(FoundModel(
            id=name, type="embedding" if embedding else "llm",
            params=count(info.get("general.parameter_count")) or parse_params(label),
            params_label=label, size_bytes=count(m.get("size")),
            quantization=text(details.get("quantization_level"), 40),
            context_length=context, context_fixed=context is not None, context_source=source,
            max_context=count(info.get(f"{arch}.context_length")) if arch else None,
            loaded=live is not None,
            supports_tools=("tools" in caps) if caps else None,
            arch=arch, arch_facts=_ollama_arch(info, arch),
        ))
    return out


def _ollama_arch(info: dict[str, Any], arch: str | None) -> ArchFacts | None:
    if not arch:
        return None
    layers = count(info.get(f"{arch}.block_count"))
    q_heads = count(info.get(f"{arch}.attention.head_count"))
    kv_heads = count(info.get(f"{arch}.attention.head_count_kv"))  # a per-layer list: unknown
    embedding = count(info.get(f"{arch}.embedding_length"))
    head_dim = count(info.get(f"{arch}.attention.key_length"))
    if head_dim is None and embedding and q_heads:
        head_dim = embedding // q_heads
    if layers and q_heads and kv_heads and head_dim:
        return ArchFacts(layers=layers, q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim)
    return None


def llama_server(props: Any, models: Any) -> list[FoundModel] | None:
    """llama.cpp `llama-server`: `/props` and `/v1/models`, or None when `props` is not that."""
    p = mapping(props)
    settings = mapping(p.get("default_generation_settings"))
    if not settings and "total_slots" not in p and "model_path" not in p:
        return None
    path = ident(p.get("model_path"))
    slot_ctx = count(settings.get("n_ctx")) or count(p.get("n_ctx"))
    caps = mapping(p.get("chat_template_caps"))
    out = []
    for raw in items(mapping(models).get("data")) or [{"id": path}]:
        m = mapping(raw)
        model_id = ident(m.get("id"))
        if model_id is None:
            continue
        meta = mapping(m.get("meta"))
        context = slot_ctx or count(meta.get("n_ctx"))
        out.append(FoundModel(
            id=model_id, params=count(meta.get("n_params")), size_bytes=count(meta.get("size")),
            quantization=quant_from_name(path) or quant_from_name(model_id),
            context_length=context, context_fixed=context is not None,
            context_source="the server's context per slot (/props n_ctx)" if context else "",
            max_context=count(meta.get("n_ctx_train")), loaded=True,
            slots=count(p.get("total_slots")),
            supports_tools=_flag(caps.get("supports_tools")), gguf_path=path,
        ))
    return out


def openai_models(body: Any) -> list[dict[str, Any]] | None:
    """The `data` entries of an OpenAI `GET /v1/models` answer, or None when it is not one."""
    data = mapping(body).get("data")
    return [mapping(d) for d in items(data)] if isinstance(data, list) else None


def is_vllm(entries: list[dict[str, Any]]) -> bool:
    return any(e.get("owned_by") == "vllm" or "max_model_len" in e for e in entries)


def vllm(entries: list[dict[str, Any]]) -> list[FoundModel]:
    out = []
    for e in entries:
        model_id = ident(e.get("id"))
        if model_id is None:
            continue
        context = count(e.get("max_model_len"))
        out.append(FoundModel(
            id=model_id, quantization=quant_from_name(model_id), context_length=context,
            context_fixed=context is not None, loaded=True,
            context_source="the server's max_model_len" if context else "",
        ))
    return out


def plain(entries: list[dict[str, Any]], llama_cpp_python: bool) -> list[FoundModel]:
    """Models of a server that only lists ids (llama-cpp-python, any OpenAI-compatible server)."""
    out = []
    for e in entries:
        model_id = ident(e.get("id"))
        if model_id is None:
            continue
        model = FoundModel(id=model_id, quantization=quant_from_name(model_id), loaded=True)
        if llama_cpp_python:
            model.context_length = LLAMA_CPP_PYTHON_DEFAULT_CTX
            model.context_fixed = True
            model.context_source = (
                "assumed: llama-cpp-python does not report its context; 2048 is its default "
                "--n_ctx (set this to the --n_ctx you started it with)"
            )
        out.append(model)
    return out


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
