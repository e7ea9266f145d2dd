"""Loading a role's model explicitly, in each server's own dialect, and the auto-evict check.

LM Studio: `POST /api/v1/models/load` {model, context_length} (0.4.0+). Ollama: an empty
`/api/generate` with `keep_alive: -1` loads and pins the model, `options.num_ctx` sets its
context. Both list what is loaded first (backends/control.py). llama.cpp servers and vLLM load
their model at start; the embedded model and managed llama.cpp servers are loaded by the process
that uses them. See docs/residency.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from localroute.backends.control import LMStudioControl, OllamaControl
from localroute.config.schema import BackendKind, ResolvedRole
from localroute.types import LLMLoadError

LOAD_TIMEOUT_S = 600.0  # a 80B model can take minutes to map


class LoadResult(BaseModel):
    role: str
    model: str
    backend: str
    status: str  # loaded | already_loaded | not_needed | failed
    detail: str = ""
    load_time_s: float | None = None


def control_for(role: ResolvedRole) -> LMStudioControl | OllamaControl | None:
    """The control plane of a server localroute can load models into (None: it loads its own)."""
    if role.backend == BackendKind.lmstudio and role.endpoint:
        return LMStudioControl(role)
    if role.backend == BackendKind.ollama and role.endpoint:
        return OllamaControl(role)
    return None


async def load_role(role: ResolvedRole) -> LoadResult:
    """Load the model of a role that owns an instance, with the instance's context length;
    an instance the server already holds is adopted, never loaded a second time."""
    base = LoadResult(role=role.name, model=role.id, backend=role.backend.value, status="failed")
    if role.backend in (BackendKind.lmstudio, BackendKind.ollama) and not role.endpoint:
        return base.model_copy(update={"detail": "no endpoint configured"})
    control = control_for(role)
    if control is None:
        detail = ("started by the process that serves it (localroute serve, ask)" if role.managed
                  else f"{role.backend.value} loads its model itself (at server start or first "
                  "use)")
        return base.model_copy(update={"status": "not_needed", "detail": detail})
    try:
        if await control.probe():
            return base.model_copy(update={"status": "already_loaded",
                                           "detail": "the server already holds it"})
        seconds = await control.load(LOAD_TIMEOUT_S)
        if seconds is None:  # loaded between the probe and the load
            return base.model_copy(update={"status": "already_loaded",
                                           "detail": "the server already holds it"})
    except LLMLoadError as exc:
        return base.model_copy(update={"detail": str(exc)})
    finally:
        await control.aclose()
    how = ("pinned (keep_alive -1)" if isinstance(control, OllamaControl) else "instance")
    return base.model_copy(update={
        "status": "loaded", "load_time_s": seconds,
        "detail": f"{how} at context {role.instance_context_length}",
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
