from __future__ import annotations

import os
import tempfile

# Telemetry and governance state of the test run goes to a directory of its own, never to the
# person's real state directory (subprocesses started by tests inherit it).
os.environ.setdefault("LOCALROUTE_STATE_DIR", tempfile.mkdtemp(prefix="localroute-test-state-"))
# Likewise the user's models.yaml (`localroute init` writes it, and localroute reads it by
# default): the tests never see the person's own file.
os.environ.setdefault("LOCALROUTE_CONFIG_DIR", tempfile.mkdtemp(prefix="localroute-test-config-"))
from collections.abc import Iterator
from pathlib import Path

import pytest

from localroute.config.loader import resolve_profile
from localroute.config.schema import ProfileConfig, ResolvedProfile, RoleConfig, StackConfig
from tests.support.servers import MODEL_ALIAS, LlamaServer


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
