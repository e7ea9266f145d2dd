"""The control plane of one loaded instance: is it loaded, load it, unload it, in each server's
own dialect. The residency manager decides when; these adapters only do.

- LM Studio (0.4+): `GET /api/v1/models` lists each model's `loaded_instances`;
  `POST /api/v1/models/load {model, context_length}` answers `{instance_id, load_time_seconds}`;
  `POST /api/v1/models/unload {instance_id}`. Loading a model that is already loaded creates a
  second copy, so every load lists first.
- Ollama: `GET /api/ps` lists what is in memory (`size_vram`); an empty `/api/generate` with
  `keep_alive` loads (-1: until told otherwise), `keep_alive: 0` unloads; `options.num_ctx`
  fixes the context (a different one per request would reload the model).
- A managed llama.cpp server (backends/managed.py) is loaded by starting its process.
- Anything else (vLLM, a llama.cpp server you run, the embedded model) loads its model itself:
  it is always taken as loaded and is never unloaded.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

from localroute.backends.http import make_client
from localroute.backends.introspect import server_root
from localroute.config.schema import ResolvedRole
from localroute.types import LLMLoadError, LLMLoadTimeout

PROBE_TIMEOUT_S = 5.0


class InstanceControl(Protocol):
    """What the residency manager asks of an instance's server."""

    can_unload: bool

    async def probe(self) -> bool | None:
        """Whether the server has the model in memory now (None: it cannot say). Never loads."""
        ...

    async def load(self, timeout: float) -> float | None:
        """Load, and return the seconds it took; None when the server already held the model
        (adopted, never loaded twice). Raises LLMLoadError, or LLMLoadTimeout past `timeout`."""
        ...

    async def unload(self, grace: float) -> None: ...

    def died(self) -> str | None:
        """Why an instance we loaded is gone behind our back (a managed server exited)."""
        ...

    async def aclose(self) -> None: ...


def same_model(a: str, b: str) -> bool:
    """Servers list 'publisher/name' or 'name:tag' where the config may say either."""
    return a.lower() == b.lower() or a.lower().split("/")[-1] == b.lower().split("/")[-1]


class _HttpControl:
    can_unload = True

    def __init__(self, role: ResolvedRole) -> None:
        assert role.endpoint is not None  # the config requires one for these backends
        self.role = role
        self.root = server_root(role.endpoint)
        self.http = make_client(PROBE_TIMEOUT_S)  # the shared TLS context (http.py)

    def _error(self, what: str, detail: str) -> LLMLoadError:
        return LLMLoadError(
            f"role '{self.role.name}' (model '{self.role.id}' at {self.root}): {what}: {detail}",
            role=self.role.name, model=self.role.id, url=self.root)

    async def _post(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        url = f"{self.root}{path}"
        try:
            r = await self.http.post(url, json=body, timeout=timeout)
        except httpx.TimeoutException:
            raise LLMLoadTimeout(
                f"role '{self.role.name}' (model '{self.role.id}'): POST {url} did not finish "
                f"within load_timeout {timeout:g} s", role=self.role.name, model=self.role.id,
                url=self.root) from None
        except httpx.HTTPError as exc:
            raise self._error(f"POST {url} failed", f"{type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            raise self._error(f"POST {url} -> HTTP {r.status_code}", r.text[:300])
        data: dict[str, Any] = r.json() if r.content else {}
        return data

    def died(self) -> str | None:
        return None  # noticed by probing instead: the server is not ours

    async def aclose(self) -> None:
        await self.http.aclose()


class LMStudioControl(_HttpControl):
    async def _instances(self) -> list[str] | None:
        """Ids of the loaded instances of this role's model (None: no v1 API answered)."""
        try:
            r = await self.http.get(f"{self.root}/api/v1/models")
            if r.status_code != 200:
                return None
            models = r.json().get("models", [])
        except (httpx.HTTPError, ValueError):
            return None
        for m in models:
            if same_model(str(m.get("key", "")), self.role.id):
                return [str(i.get("id")) for i in m.get("loaded_instances") or []]
        return []

    async def probe(self) -> bool | None:
        ids = await self._instances()
        return None if ids is None else bool(ids)

    async def load(self, timeout: float) -> float | None:
        if await self._instances():
            return None  # already loaded: adopt it, never a second copy
        started = time.perf_counter()
        data = await self._post("/api/v1/models/load",
                                {"model": self.role.id,
                                 "context_length": self.role.instance_context_length,
                                 "echo_load_config": True}, timeout)
        reported = data.get("load_time_seconds")
        return float(reported) if isinstance(reported, int | float) else (
            time.perf_counter() - started)

    async def unload(self, grace: float) -> None:
        for instance_id in await self._instances() or []:
            await self._post("/api/v1/models/unload", {"instance_id": instance_id}, grace + 30)


class OllamaControl(_HttpControl):
    async def probe(self) -> bool | None:
        try:
            r = await self.http.get(f"{self.root}/api/ps")
            if r.status_code != 200:
                return None
            return any(same_model(str(m.get("name", "")), self.role.id)
                       for m in r.json().get("models", []))
        except (httpx.HTTPError, ValueError):
            return None

    def keep_alive(self) -> int:
        """-1 (until unloaded) for a pinned instance; an on-demand one keeps its idle TTL on
        the server too, so it still goes away if this process is gone."""
        if self.role.on_demand and self.role.idle_ttl is not None:
            return max(1, int(self.role.idle_ttl))
        return -1

    async def load(self, timeout: float) -> float | None:
        if await self.probe():
            return None
        started = time.perf_counter()
        data = await self._post("/api/generate",
                                {"model": self.role.id, "prompt": "", "stream": False,
                                 "keep_alive": self.keep_alive(),
                                 "options": {"num_ctx": self.role.instance_context_length}},
                                timeout)
        ns = data.get("load_duration")
        return ns / 1e9 if isinstance(ns, int | float) else time.perf_counter() - started

    async def unload(self, grace: float) -> None:
        await self._post("/api/generate", {"model": self.role.id, "keep_alive": 0,
                                           "stream": False}, grace + 30)


class StaticControl:
    """A server that loads its model itself: always taken as loaded, never unloaded."""

    can_unload = False

    async def probe(self) -> bool | None:
        return None

    async def load(self, timeout: float) -> float | None:
        return None

    async def unload(self, grace: float) -> None:
        return None

    def died(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
