"""Finding model servers and asking each what it serves (for `localroute init`).

Each address is identified from its own answers, not from its port: LM Studio answers
`/api/v1/models` (0.4+) or `/api/v0/models`, Ollama `/api/tags`, llama.cpp's `llama-server`
`/props`, vLLM lists `max_model_len` in `/v1/models`, and llama-cpp-python's server names itself
in its OpenAPI title. Anything else that lists models on `/v1/models` is a plain OpenAI-compatible
server. Parsing of the answers lives in server_facts.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from localroute.backends import server_facts as facts
from localroute.backends.introspect import server_root
from localroute.backends.openai_compat import START_HINTS
from localroute.backends.server_facts import FoundModel

# The ports each server listens on when started without --port.
DEFAULT_PORTS: dict[str, int] = {"lmstudio": 1234, "ollama": 11434, "llamacpp": 8080,
                                 "vllm": 8000}
DEFAULT_HOST = "127.0.0.1"
# A serialised server (llama-cpp-python) answers its model list only between generations.
TIMEOUT = httpx.Timeout(10.0, connect=1.5)
MAX_BODY = 8 * 2**20  # a model list is kilobytes; anything far larger is not one
SHOW_CONCURRENCY = 4  # Ollama /api/show calls in flight at once


class FoundServer(BaseModel):
    kind: str  # lmstudio | ollama | llamacpp | vllm | openai (the models.yaml backend)
    flavour: str  # what answered, in words ("LM Studio (REST API v1)", "llama-cpp-python")
    root: str
    base_url: str  # the OpenAI base URL roles use (root + /v1)
    models: list[FoundModel]
    notes: list[str] = Field(default_factory=list)


class Probe(BaseModel):
    """One address tried: the server found there, or why none was."""

    url: str
    source: str  # "default port of lmstudio" | "--endpoint"
    server: FoundServer | None = None
    problem: str | None = None


class EndpointError(ValueError):
    """An --endpoint value that is not an http(s) URL."""


def normalise_endpoint(url: str) -> str:
    """The server root of an --endpoint value (`http://host:port[/v1]` -> `http://host:port`)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(
            f"--endpoint '{url}': not an http(s) URL; give the server's address, e.g. "
            "http://127.0.0.1:8080 or http://gpu-box:8000/v1"
        )
    return server_root(url.strip())


async def _get_json(http: httpx.AsyncClient, url: str) -> Any | None:
    """The JSON body of a 200 answer; None for any other status, a non-JSON or oversized body,
    or a request that fails (the first request of a probe already showed the server answers)."""
    try:
        r = await http.get(url)
    except httpx.HTTPError:
        return None
    if r.status_code != 200 or len(r.content) > MAX_BODY:
        return None
    try:
        return r.json()
    except ValueError:
        return None


async def _post_json(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Any | None:
    try:
        r = await http.post(url, json=body)
        if r.status_code != 200 or len(r.content) > MAX_BODY:
            return None
        return r.json()
    except (httpx.HTTPError, ValueError):
        return None


async def _ollama_shows(http: httpx.AsyncClient, root: str, tags: Any) -> dict[str, Any]:
    names = [n for n in (facts.ident(facts.mapping(m).get("name"))
                         for m in facts.items(facts.mapping(tags).get("models"))) if n]
    gate = asyncio.Semaphore(SHOW_CONCURRENCY)

    async def show(name: str) -> Any:
        async with gate:
            return await _post_json(http, f"{root}/api/show", {"model": name})

    answers = await asyncio.gather(*(show(n) for n in names))
    return dict(zip(names, answers, strict=True))


async def identify(http: httpx.AsyncClient, root: str) -> FoundServer | str:
    """The server at `root` and its models, or a sentence saying why there is none."""
    try:
        first = await http.get(f"{root}/v1/models")
    except httpx.ConnectError:
        return "nothing is listening"
    except httpx.TimeoutException:
        return f"no answer within {TIMEOUT.read:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if first.status_code in (401, 403):
        return (f"GET /v1/models answered HTTP {first.status_code}: the server wants an API key "
                "(write the models.yaml by hand with `api_key`)")
    try:
        listed = (facts.openai_models(first.json())
                  if first.status_code == 200 and len(first.content) <= MAX_BODY else None)
    except ValueError:
        listed = None
    v1, v0, tags, props = await asyncio.gather(
        _get_json(http, f"{root}/api/v1/models"), _get_json(http, f"{root}/api/v0/models"),
        _get_json(http, f"{root}/api/tags"), _get_json(http, f"{root}/props"))
    base = f"{root}/v1"
    if (models := facts.lmstudio_v1(v1)) is not None:
        return FoundServer(kind="lmstudio", flavour="LM Studio (REST API v1)", root=root,
                           base_url=base, models=models)
    if (models := facts.lmstudio_v0(v0)) is not None:
        return FoundServer(kind="lmstudio", flavour="LM Studio (REST API v0)", root=root,
                           base_url=base, models=models)
    # Before Ollama: llama-server also answers /api/tags (an Ollama-compatible listing).
    if (models := facts.llama_server(props, {"data": listed or []})) is not None:
        return FoundServer(kind="llamacpp", flavour="llama.cpp llama-server", root=root,
                           base_url=base, models=models)
    if facts.mapping(tags).get("models") is not None:
        ps, shows = await asyncio.gather(_get_json(http, f"{root}/api/ps"),
                                         _ollama_shows(http, root, tags))
        return FoundServer(kind="ollama", flavour="Ollama", root=root, base_url=base,
                           models=facts.ollama(tags, ps, shows) or [])
    if listed is None:
        return (f"answers HTTP, but not as a model server (GET /v1/models: HTTP "
                f"{first.status_code})")
    if facts.is_vllm(listed):
        return FoundServer(kind="vllm", flavour="vLLM", root=root, base_url=base,
                           models=facts.vllm(listed))
    if any(e.get("owned_by") == "llamacpp" for e in listed):
        return FoundServer(kind="llamacpp", flavour="llama.cpp llama-server", root=root,
                           base_url=base, models=facts.plain(listed, llama_cpp_python=False))
    title = facts.text(facts.mapping(facts.mapping(
        await _get_json(http, f"{root}/openapi.json")).get("info")).get("title")) or ""
    if "llama.cpp" in title:
        return FoundServer(kind="llamacpp", flavour="llama-cpp-python", root=root, base_url=base,
                           models=facts.plain(listed, llama_cpp_python=True))
    return FoundServer(
        kind="openai", flavour="OpenAI-compatible server", root=root, base_url=base,
        models=facts.plain(listed, llama_cpp_python=False),
        notes=["not recognised as LM Studio, Ollama, llama.cpp or vLLM: context limits unknown"])


def targets(endpoints: list[str], scan: bool, ports: dict[str, int] | None = None,
            host: str = DEFAULT_HOST) -> list[tuple[str, str]]:
    """(server root, why it is tried), defaults first, each address once."""
    chosen: dict[str, str] = {}
    if scan:
        for kind, port in (ports or DEFAULT_PORTS).items():
            chosen.setdefault(f"http://{host}:{port}", f"default port of {kind}")
    for url in endpoints:
        chosen.setdefault(normalise_endpoint(url), "--endpoint")
    return list(chosen.items())


async def discover(endpoints: list[str], scan: bool = True,
                   ports: dict[str, int] | None = None) -> list[Probe]:
    """Probe every default port (when `scan`) and every endpoint, all at once."""
    tried = targets(endpoints, scan, ports)
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
        found = await asyncio.gather(*(identify(http, root) for root, _ in tried))
    return [
        Probe(url=root, source=source, server=result if isinstance(result, FoundServer) else None,
              problem=result if isinstance(result, str) else None)
        for (root, source), result in zip(tried, found, strict=True)
    ]


def nothing_found_message(probes: list[Probe]) -> str:
    """What was tried and how to start each server, for the person who has none running."""
    lines = ["no model server found. Tried:"]
    lines += [f"  {p.url} ({p.source}): {p.problem or 'no chat model listed'}" for p in probes]
    lines.append("Start one, then run `localroute init` again:")
    for kind, port in DEFAULT_PORTS.items():
        lines.append(f"  {kind} (port {port}): {START_HINTS[kind]}")
    lines.append("A server elsewhere: `localroute init --endpoint http://HOST:PORT`. Without any "
                 "server, `localroute --profile embedded ...` runs the demonstration model.")
    return "\n".join(lines)


def as_json(probes: list[Probe]) -> list[dict[str, Any]]:
    return [json.loads(p.model_dump_json()) for p in probes]
