"""`localroute init`, in process: identifying servers from their answers, the facts read from
them, the role proposal and the planner's verdict. LM Studio, Ollama, llama-server and vLLM are
replayed by real HTTP servers (tests/support/replay.py) in their documented shapes
(tests/support/init_replies.py); llama-cpp-python's server is the real one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from localroute.backends.discovery import FoundServer, discover, nothing_found_message
from localroute.config.loader import PACKAGED_MODELS, config_origin
from localroute.onboarding import sizing
from localroute.onboarding.proposal import (
    Candidate,
    assign,
    candidates,
    is_coder,
    name_params,
    propose,
)
from localroute.onboarding.settings import role_settings
from localroute.resources.planner import GIB
from tests.support import init_replies as R
from tests.support.replay import replaying
from tests.support.servers import LlamaServer, free_port


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        yield {
            "lmstudio": stack.enter_context(replaying(R.LMSTUDIO)),
            "ollama": stack.enter_context(replaying(R.OLLAMA, R.OLLAMA_SHOW)),
            "llamacpp": stack.enter_context(replaying(R.LLAMA_SERVER)),
            "vllm": stack.enter_context(replaying(R.VLLM)),
        }


async def _found(urls: list[str]) -> list[FoundServer]:
    probes = await discover(urls, scan=False)
    assert all(p.server is not None for p in probes), [p.problem for p in probes]
    return [p.server for p in probes if p.server is not None]


def _by_id(cands: list[Candidate]) -> dict[str, Candidate]:
    return {c.model.id: c for c in cands}


async def test_each_server_is_identified_by_its_answers(servers: dict[str, str]) -> None:
    found = {s.root: s for s in await _found(list(servers.values()))}
    kinds = {name: (found[url].kind, found[url].flavour) for name, url in servers.items()}
    assert kinds == {
        "lmstudio": ("lmstudio", "LM Studio (REST API v1)"),
        "ollama": ("ollama", "Ollama"),
        # llama-server also answers /api/tags; /props says what it is.
        "llamacpp": ("llamacpp", "llama.cpp llama-server"),
        "vllm": ("vllm", "vLLM"),
    }
    assert found[servers["lmstudio"]].base_url == servers["lmstudio"] + "/v1"


async def test_default_ports_are_identified_by_answers_not_by_port(
        servers: dict[str, str]) -> None:
    # Ollama answering on "LM Studio's port" is still Ollama.
    port = int(servers["ollama"].rsplit(":", 1)[1])
    (probe,) = await discover([], scan=True, ports={"lmstudio": port})
    assert probe.source == "default port of lmstudio"
    assert probe.server is not None and probe.server.kind == "ollama"


async def test_facts_read_from_each_dialect(servers: dict[str, str]) -> None:
    models = {m.id: m for s in await _found(list(servers.values())) for m in s.models}
    router = models["qwen/qwen3-4b-2507"]
    assert (router.loaded, router.context_length, router.context_fixed) == (True, 32768, True)
    assert (router.quantization, router.params, router.supports_tools) == ("Q8_0", 4e9, True)
    r1 = models["deepseek-ai/deepseek-r1-distill-qwen-14b"]
    assert (r1.loaded, r1.context_length, r1.max_context) == (False, None, 131072)
    assert models["text-embedding-nomic-embed-text-v1.5-embedding"].type == "embedding"
    loaded = models["qwen3:4b"]  # /api/ps: loaded at 8192
    assert (loaded.context_length, loaded.context_source) == (8192, "the loaded model's context")
    assert loaded.arch_facts is not None and loaded.arch_facts.head_dim == 2560 // 32
    assert models["qwen2.5-coder:7b"].context_length == 32768  # its Modelfile's num_ctx
    assert models["qwq:32b"].context_length is None  # not loaded, no num_ctx: not known
    assert models["nomic-embed-text:latest"].type == "embedding"
    coder = models["qwen2.5-coder-14b"]  # llama-server: per-slot n_ctx, slots, meta
    assert (coder.context_length, coder.slots, coder.max_context) == (8192, 2, 32768)
    assert (coder.quantization, coder.params) == ("Q4_K_M", 14770033664)
    assert models["Qwen/Qwen3-8B"].context_length == 32768  # vLLM max_model_len


async def test_real_llama_cpp_python_server_is_identified(llama_server: LlamaServer) -> None:
    (server,) = await _found([llama_server.base_url])  # /v1 suffix accepted
    assert (server.kind, server.flavour, server.root) == ("llamacpp", "llama-cpp-python",
                                                          llama_server.url)
    (model,) = server.models
    # It reports no context size: its default is assumed and the written file says so.
    assert model.id == "smollm2" and model.context_length == 2048
    assert "does not report" in model.context_source


async def test_nothing_listening_is_reported_with_how_to_start_each_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    (probe,) = await discover([url], scan=False)
    assert probe.server is None and probe.problem == "nothing is listening"
    message = nothing_found_message([probe])
    assert url in message
    for hint in ("lms server start", "ollama serve", "llama-server -m", "vllm serve",
                 "port 1234", "port 11434", "port 8080", "port 8000"):
        assert hint in message


async def test_lmstudio_proposal_follows_family_and_size(servers: dict[str, str]) -> None:
    cands = candidates(await _found([servers["lmstudio"]]))
    proposal = propose(cands)
    by_key = {c.key: c for c in cands}
    chosen = {role: by_key[c.key].model.id for role, c in proposal.roles.items()}
    assert chosen == {
        "router": "qwen/qwen3-4b-2507",  # largest small general model
        "summarization": "qwen/qwen3-1.7b",  # smallest general model
        "validation": "qwen/qwen3-4b-2507",
        "reasoning": "deepseek-ai/deepseek-r1-distill-qwen-14b",  # "r1" in the name
        "reasoning_heavy": "qwen/qwen3-next-80b",  # largest general model
        "coding": "mistralai/devstral-small-2-2512",
        "coding_large_context": "qwen/qwen3-coder-30b",  # coder with the largest context
    }
    assert proposal.roles["validation"].shares_with == "router"
    assert all(c.shares_with is None for r, c in proposal.roles.items() if r != "validation")
    settings = role_settings(proposal, by_key)
    assert settings["router"].values["context_length"] == 32768  # the loaded instance's
    assert settings["coding_large_context"].values["context_length"] == 131072  # capped
    reasoning = settings["reasoning"].values
    assert reasoning["reasoning"] is True and reasoning["system_prompt"] == "merge_into_user"
    assert reasoning["fallback"] == ["reasoning_heavy"]
    assert settings["coding"].values["supports_tools"] is True


async def test_a_model_too_large_alone_is_not_proposed(servers: dict[str, str]) -> None:
    cands = candidates(await _found([servers["lmstudio"]]))
    by_id = _by_id(cands)
    # qwen3-next-80b at Q4_K_M: 48 GB of weights (44.7 GiB) before any KV cache, so a 40 GiB
    # budget cannot hold it alone; every other model here fits 40 GiB on its own.
    excluded = sizing.too_large(cands, 40 * GIB)
    assert set(excluded) == {by_id["qwen/qwen3-next-80b"].key}
    proposal = propose(cands, excluded)
    heavy = proposal.roles["reasoning_heavy"]
    assert heavy.key == by_id["deepseek-ai/deepseek-r1-distill-qwen-14b"].key
    assert heavy.shares_with == "reasoning"
    assert any("qwen3-next-80b" in n and "40.0 GiB budget" in n for n in proposal.notes)
    # With 1 GiB nothing fits alone (the smallest, qwen3-1.7b, needs 5.3 GiB at 32768 tokens):
    # the proposal is made anyway and says so.
    nothing = propose(cands, sizing.too_large(cands, 1 * GIB))
    assert nothing.roles["reasoning_heavy"].key == by_id["qwen/qwen3-next-80b"].key
    assert nothing.notes and "proposed anyway" in nothing.notes[0]


async def test_plan_check_sizes_every_instance_and_judges_the_budget(
        servers: dict[str, str]) -> None:
    cands = candidates(await _found([servers["lmstudio"]]))
    by_key = {c.key: c for c in cands}
    proposal = propose(cands)
    settings = role_settings(proposal, by_key)
    roomy, how = sizing.check(proposal, by_key, settings, 400 * GIB, "--budget")
    assert roomy.fits and not roomy.errors
    owners = [r for r in roomy.roles if r.shares_instance_with is None]
    assert len(owners) == 6 and all(r.memory is not None for r in owners)
    # Catalog models are sized from their architecture with the weights the server reports.
    router = next(r.memory for r in roomy.roles if r.role == "router")
    assert router is not None and router.weight_bytes == int(4.28 * R.GB)
    assert router.kv_bytes > 0 and "architecture of Qwen3-4B" in how["router"]
    tight, _ = sizing.check(proposal, by_key, settings, 40 * GIB, "--budget")
    assert not tight.fits and tight.headroom_bytes < 0 and tight.combinations
    assert tight.total_bytes == roomy.total_bytes


async def test_mixed_servers_proposal_and_sizing(servers: dict[str, str]) -> None:
    urls = [servers["ollama"], servers["llamacpp"], servers["vllm"]]
    cands = candidates(await _found(urls))
    by_key = {c.key: c for c in cands}
    proposal = propose(cands)
    chosen = {role: by_key[c.key].model.id for role, c in proposal.roles.items()}
    assert chosen["router"] == "Qwen/Qwen3-8B"  # 8B from its name: the largest small model
    assert chosen["summarization"] == "qwen3:4b"
    assert chosen["reasoning"] == "qwq:32b" and chosen["reasoning_heavy"] == "qwq:32b"
    assert proposal.roles["reasoning_heavy"].shares_with == "reasoning"
    # Two coders: the 32768-token Ollama one takes the large context, the 14B the other.
    assert chosen["coding_large_context"] == "qwen2.5-coder:7b"
    assert chosen["coding"] == "qwen2.5-coder-14b"
    settings = role_settings(proposal, by_key)
    assert settings["router"].values["endpoint"] == servers["vllm"] + "/v1"
    assert settings["coding"].values["max_concurrency"] == 2  # llama-server's slots
    assert settings["reasoning"].values["context_length"] == 4096  # Ollama default, said so
    assert "OLLAMA_CONTEXT_LENGTH" in " ".join(settings["reasoning"].why)
    plan, how = sizing.check(proposal, by_key, settings, 400 * GIB, "--budget")
    summarization = next(r.memory for r in plan.roles if r.role == "summarization")
    # Not in the catalog: sized from the architecture Ollama's /api/show reports.
    assert summarization is not None and summarization.kv_bytes == 2 * 36 * 8 * 80 * 2 * 8192
    assert "architecture of qwen3:4b" in how["summarization"]
    # vLLM reports no size: the router's model cannot be sized, and the plan says so.
    assert any("Qwen/Qwen3-8B" in e for e in plan.errors) and not plan.fits


async def test_one_model_plays_every_role_and_a_changed_role_owns_its_instance(
        servers: dict[str, str]) -> None:
    (vllm,) = await _found([servers["vllm"]])
    cands = candidates([vllm])
    proposal = propose(cands)
    assert {c.key for c in proposal.roles.values()} == {"1"}
    assert [r for r, c in proposal.roles.items() if c.shares_with is None] == ["router"]
    both = candidates(await _found([servers["vllm"], servers["llamacpp"]]))
    changed = assign(propose(both), "router", "2")
    assert changed.roles["router"].why == "chosen by you"
    # Validation follows the router onto its new model; the role left behind owns its own.
    assert changed.roles["validation"].key == "2"
    assert changed.roles["validation"].shares_with == "router"
    assert changed.roles["reasoning"].key == "1" and changed.roles["reasoning"].shares_with is None


def test_names_give_size_and_family() -> None:
    assert name_params("qwen/qwen3-coder-30b-a3b") == 30e9
    assert name_params("mixtral-8x7b-instruct") == 56e9
    assert name_params("SmolLM2-135M-Instruct") == 135e6
    assert name_params("qwen3-1.7b") == 1.7e9 and name_params("phi-4") is None
    assert is_coder("qwen2.5-coder:7b") and is_coder("mistralai/devstral-small-2")
    assert is_coder("codellama:13b") and not is_coder("t5-decoder") and not is_coder("qwen3:4b")


def test_config_file_order(tmp_path: Path) -> None:
    mine, other = tmp_path / "dir" / "models.yaml", tmp_path / "other.yaml"
    env = {"LOCALROUTE_CONFIG_DIR": str(mine.parent)}
    assert config_origin(None, env) == (PACKAGED_MODELS, "packaged")  # no user file yet
    mine.parent.mkdir()
    mine.write_text("version: 1\n")
    assert config_origin(None, env) == (mine, "user")
    assert config_origin(None, env | {"LOCALROUTE_CONFIG": str(other)}) == (
        other, "LOCALROUTE_CONFIG")
    assert config_origin(str(other), env) == (other, "--config")
