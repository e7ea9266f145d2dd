"""Which models a server serves and which are loaded, in each server's own dialect.

LM Studio's native `/api/v0/models` says `state: loaded | not-loaded`; Ollama's `/api/ps` lists
what is in memory; any other server only offers `/v1/models` (served, load state unknown).
"""

from __future__ import annotations

from typing import Any

import httpx

from localroute.backends.base import ModelInfo


def server_root(url: str) -> str:
    """The server's root URL: the OpenAI base URL without its trailing /v1."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


async def _lmstudio_v1(http: httpx.AsyncClient, root: str) -> list[ModelInfo] | None:
    """LM Studio >= 0.4: loaded instances with their context, and the model's size in bytes
    (the weights it maps: the memory a loaded model holds besides its KV cache)."""
    r = await http.get(f"{root}/api/v1/models")
    if r.status_code != 200:
        return None
    out = []
    for m in r.json().get("models", []):
        instances = m.get("loaded_instances") or []
        config = (instances[0].get("config") or {}) if instances else {}
        out.append(
            ModelInfo(
                id=m["key"],
                loaded=bool(instances),
                context_length=config.get("context_length") or m.get("max_context_length"),
                size_bytes=m.get("size_bytes") if instances else None,
                details={"instances": len(instances), "parallel": config.get("parallel"),
                         "quantization": (m.get("quantization") or {}).get("name")},
            )
        )
    return out


async def _lmstudio(http: httpx.AsyncClient, root: str) -> list[ModelInfo] | None:
    v1 = await _lmstudio_v1(http, root)
    if v1 is not None:
        return v1
    r = await http.get(f"{root}/api/v0/models")
    if r.status_code != 200:
        return None
    out = []
    for m in r.json().get("data", []):
        out.append(
            ModelInfo(
                id=m["id"],
                loaded=m.get("state") == "loaded",
                context_length=m.get("loaded_context_length") or m.get("max_context_length"),
                details={k: m[k] for k in ("type", "arch", "quantization", "state") if k in m},
            )
        )
    return out


async def _ollama(http: httpx.AsyncClient, root: str) -> list[ModelInfo] | None:
    tags = await http.get(f"{root}/api/tags")
    if tags.status_code != 200:
        return None
    ps = await http.get(f"{root}/api/ps")
    loaded: dict[str, dict[str, Any]] = {}
    if ps.status_code == 200:
        loaded = {m["name"]: m for m in ps.json().get("models", [])}
    out = []
    for m in tags.json().get("models", []):
        running = loaded.get(m["name"])
        out.append(
            ModelInfo(
                id=m["name"],
                loaded=running is not None,
                context_length=(running or {}).get("context_length"),
                # Memory only for a loaded model (size_vram); the file size says nothing of it.
                size_bytes=(running or {}).get("size_vram"),
                details={"expires_at": (running or {}).get("expires_at")},
            )
        )
    return out


async def list_models(kind: str, url: str, http: httpx.AsyncClient,
                      timeout: float) -> list[ModelInfo]:
    """Models the server at `url` serves; raises httpx's errors when it does not answer, and
    `ValueError` when it answers something else than a model list."""
    root = server_root(url)
    native = {"lmstudio": _lmstudio, "ollama": _ollama}.get(kind)
    if native is not None:
        try:
            found = await native(http, root)
        except (httpx.HTTPError, ValueError, KeyError):
            found = None
        if found is not None:
            return found
    r = await http.get(url.rstrip("/") + "/models", timeout=timeout)
    r.raise_for_status()
    body = r.json()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"GET {url}/models did not answer an OpenAI model list")
    return [ModelInfo(id=str(m["id"]), loaded=None) for m in data
            if isinstance(m, dict) and "id" in m]
