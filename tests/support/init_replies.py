"""Answers of LM Studio, Ollama, llama-server and vLLM in their documented shapes, with models
chosen so every rule of `localroute init`'s proposal is exercised.

Sources of the shapes: LM Studio docs `1_developer/2_rest/list.md` (GET /api/v1/models) and
`endpoints.md` (GET /api/v0/models); Ollama `docs/api.md` (GET /api/tags, GET /api/ps, POST
/api/show); llama.cpp `tools/server/README.md` (GET /props, GET /v1/models with `meta`); vLLM's
OpenAI-compatible server (GET /v1/models with `max_model_len`). Sizes and architecture figures
are the models' published ones, rounded.
"""

from __future__ import annotations

from typing import Any

GB = 10**9


def _lms(key: str, params: str, quant: str, size: int, max_ctx: int, *, loaded_ctx: int = 0,
         tools: bool = False, kind: str = "llm", arch: str = "qwen3") -> dict[str, Any]:
    return {
        "type": kind, "publisher": key.split("/")[0], "key": key, "display_name": key,
        "architecture": arch, "quantization": {"name": quant, "bits_per_weight": 4},
        "size_bytes": size, "params_string": params,
        "loaded_instances": ([{"id": key, "config": {"context_length": loaded_ctx}}]
                             if loaded_ctx else []),
        "max_context_length": max_ctx, "format": "gguf",
        "capabilities": {"vision": False, "trained_for_tool_use": tools},
    }


LMSTUDIO_V1 = {"models": [
    _lms("qwen/qwen3-4b-2507", "4B", "Q8_0", int(4.28 * GB), 262144, loaded_ctx=32768,
         tools=True),
    _lms("qwen/qwen3-1.7b", "1.7B", "Q8_0", int(1.83 * GB), 32768),
    _lms("deepseek-ai/deepseek-r1-distill-qwen-14b", "14B", "Q4_K_M", int(8.99 * GB), 131072,
         arch="qwen2"),
    _lms("mistralai/devstral-small-2-2512", "24B", "Q4_K_M", int(14.3 * GB), 131072,
         tools=True, arch="mistral3"),
    _lms("qwen/qwen3-coder-30b", "30B", "Q4_K_M", int(18.6 * GB), 262144, tools=True,
         arch="qwen3moe"),
    _lms("qwen/qwen3-next-80b", "80B", "Q4_K_M", int(48.0 * GB), 262144, arch="qwen3next"),
    {"type": "embedding", "publisher": "gaianet",
     "key": "text-embedding-nomic-embed-text-v1.5-embedding", "display_name": "Nomic Embed",
     "quantization": {"name": "F16", "bits_per_weight": 16}, "size_bytes": 274290560,
     "params_string": None, "loaded_instances": [], "max_context_length": 2048,
     "format": "gguf"},
]}
LMSTUDIO = {"/api/v1/models": LMSTUDIO_V1,
            "/v1/models": {"object": "list", "data": [{"id": m["key"], "object": "model"}
                                                      for m in LMSTUDIO_V1["models"]]}}


def _tag(name: str, size: int, params: str, quant: str, family: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": "2026-11-04T14:56:49Z", "size": size,
            "digest": "0" * 64, "details": {"format": "gguf", "family": family,
                                            "parameter_size": params,
                                            "quantization_level": quant}}


def _show(arch: str, params: int, layers: int, heads: int, kv_heads: int, embedding: int,
          ctx: int, capabilities: list[str], parameters: str = "") -> dict[str, Any]:
    return {"parameters": parameters, "capabilities": capabilities,
            "details": {"format": "gguf", "family": arch},
            "model_info": {"general.architecture": arch, "general.parameter_count": params,
                           f"{arch}.block_count": layers, f"{arch}.attention.head_count": heads,
                           f"{arch}.attention.head_count_kv": kv_heads,
                           f"{arch}.embedding_length": embedding,
                           f"{arch}.context_length": ctx}}


OLLAMA = {
    "/api/tags": {"models": [
        _tag("qwen3:4b", int(2.5 * GB), "4.0B", "Q4_K_M", "qwen3"),
        _tag("qwq:32b", int(19.8 * GB), "32.8B", "Q4_K_M", "qwen2"),
        _tag("qwen2.5-coder:7b", int(4.7 * GB), "7.6B", "Q4_K_M", "qwen2"),
        _tag("nomic-embed-text:latest", 274_000_000, "137M", "F16", "nomic-bert"),
    ]},
    "/api/ps": {"models": [{"name": "qwen3:4b", "model": "qwen3:4b", "size": 5_100_000_000,
                            "size_vram": 5_100_000_000, "context_length": 8192,
                            "expires_at": "2026-11-26T10:00:00Z"}]},
}
OLLAMA["/v1/models"] = {"object": "list", "data": [{"id": m["name"], "owned_by": "library"}
                                                   for m in OLLAMA["/api/tags"]["models"]]}
OLLAMA_SHOW = {"/api/show": {
    "qwen3:4b": _show("qwen3", 4_022_468_096, 36, 32, 8, 2560, 40960,
                      ["completion", "tools", "thinking"]),
    "qwq:32b": _show("qwen2", 32_763_876_352, 64, 40, 8, 5120, 131072, ["completion", "tools"]),
    "qwen2.5-coder:7b": _show("qwen2", 7_615_616_512, 28, 28, 4, 3584, 32768,
                              ["completion", "tools", "insert"],
                              parameters='num_ctx                        32768\nstop "<|im_end|>"'),
    "nomic-embed-text:latest": {"capabilities": ["embedding"], "model_info": {}},
}}

LLAMA_SERVER = {
    "/props": {"default_generation_settings": {"id": 0, "n_ctx": 8192, "params": {}},
               "total_slots": 2,
               "model_path": "/models/Qwen2.5-Coder-14B-Instruct-Q4_K_M.gguf",
               "modalities": {"vision": False}},
    "/v1/models": {"object": "list", "data": [{
        "id": "qwen2.5-coder-14b", "object": "model", "owned_by": "llamacpp",
        "meta": {"vocab_type": 2, "n_vocab": 152064, "n_ctx_train": 32768,
                 "n_embd": 5120, "n_params": 14770033664, "size": 8988110976}}]},
    # llama-server also answers Ollama's listing; the identification must still say llama.cpp.
    "/api/tags": {"models": [{"name": "qwen2.5-coder-14b", "model": "qwen2.5-coder-14b"}]},
}

VLLM = {"/v1/models": {"object": "list", "data": [{
    "id": "Qwen/Qwen3-8B", "object": "model", "owned_by": "vllm", "root": "Qwen/Qwen3-8B",
    "parent": None, "max_model_len": 32768}]}}

# A server that lists ids with YAML-significant characters and one with a line break.
ODD_IDS = {"/v1/models": {"object": "list", "data": [
    {"id": "weird: model #1", "owned_by": "someone"},
    {"id": "evil\nprofiles: {}", "owned_by": "someone"},
]}}
