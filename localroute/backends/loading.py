"""Loading a role's model explicitly, in each server's own dialect, and the auto-evict check.

LM Studio: `POST /api/v1/models/load` {model, context_length} (0.4.0+). Ollama: an empty
`/api/generate` with `keep_alive: -1` loads and pins the model, `options.num_ctx` sets its
context. llama.cpp servers and vLLM load their model at start; the embedded model loads in the
process that uses it. See docs/backends.md (LM Studio, Ollama).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import BaseModel

from localroute.backends.introspect import server_root
from localroute.config.schema import BackendKind, ResolvedRole

LOAD_TIMEOUT_S = 600.0  # a 80B model can take minutes to map


class LoadResult(BaseModel):
    role: str
    model: str
    backend: str
    status: str  # loaded | already_loaded | not_needed | failed
    detail: str = ""
    load_time_s: float | None = None


async def load_role(role: ResolvedRole, http: httpx.AsyncClient) -> LoadResult:
    """Load the model of a role that owns an instance, with the instance's context length."""
    base = LoadResult(role=role.name, model=role.id, backend=role.backend.value, status="failed")
    if role.backend in (BackendKind.lmstudio, BackendKind.ollama) and not role.endpoint:
        return base.model_copy(update={"detail": "no endpoint configured"})
    try:
        if role.backend == BackendKind.lmstudio:
            return await _lmstudio(role, http, base)
        if role.backend == BackendKind.ollama:
            return await _ollama(role, http, base)
    except httpx.HTTPError as exc:
        return base.model_copy(update={"detail": f"{role.endpoint}: {type(exc).__name__}: {exc}"})
    return base.model_copy(update={
        "status": "not_needed",
        "detail": f"{role.backend.value} loads its model itself (at server start or first use)",
    })


async def _lmstudio(role: ResolvedRole, http: httpx.AsyncClient, base: LoadResult) -> LoadResult:
    assert role.endpoint is not None
    url = f"{server_root(role.endpoint)}/api/v1/models/load"
    body = {"model": role.id, "context_length": role.instance_context_length,
            "echo_load_config": True}
    r = await http.post(url, json=body, timeout=LOAD_TIMEOUT_S)
    if r.status_code != 200:
        return base.model_copy(update={"detail": f"POST {url} -> HTTP {r.status_code}: "
                                                 f"{r.text[:300]}"})
    data: dict[str, Any] = r.json()
    return base.model_copy(update={
        "status": "loaded", "load_time_s": data.get("load_time_seconds"),
        "detail": f"instance {data.get('instance_id', role.id)} at context "
                  f"{role.instance_context_length}",
    })


async def _ollama(role: ResolvedRole, http: httpx.AsyncClient, base: LoadResult) -> LoadResult:
    assert role.endpoint is not None
    url = f"{server_root(role.endpoint)}/api/generate"
    body = {"model": role.id, "prompt": "", "keep_alive": -1, "stream": False,
            "options": {"num_ctx": role.instance_context_length}}
    r = await http.post(url, json=body, timeout=LOAD_TIMEOUT_S)
    if r.status_code != 200:
        return base.model_copy(update={"detail": f"POST {url} -> HTTP {r.status_code}: "
                                                 f"{r.text[:300]}"})
    data: dict[str, Any] = r.json()
    ns = data.get("load_duration")
    return base.model_copy(update={
        "status": "loaded", "load_time_s": ns / 1e9 if isinstance(ns, int | float) else None,
        "detail": f"pinned (keep_alive -1) at num_ctx {role.instance_context_length}",
    })


def auto_evict_risk(roles: Iterable[ResolvedRole], loaded: dict[str, bool | None]) -> list[str]:
    """Warnings for LM Studio servers where more than one role's model would be JIT-loaded:
    auto-evict (on by default) keeps one JIT-loaded model, so those roles evict each other.
    `loaded` maps role name -> loaded state as the server reports it."""
    jit: dict[str, list[str]] = {}
    for role in roles:
        if role.backend != BackendKind.lmstudio or role.instance != role.name:
            continue
        if loaded.get(role.name) is False:  # unknown (server down) is not a warning
            jit.setdefault(role.endpoint or "?", []).append(f"{role.name} ({role.id})")
    return [
        f"LM Studio at {url}: {len(names)} roles are not loaded and would be JIT-loaded "
        f"({', '.join(names)}); auto-evict (on by default) keeps only one JIT-loaded model, so "
        "they would evict each other on every switch. Fix: `localroute load` (explicit loads "
        "are never evicted) or turn off Auto-Evict in LM Studio's developer settings"
        for url, names in jit.items() if len(names) > 1
    ]
