"""models.yaml: the packaged file, resolution rules and the exact error line for each mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localroute.config.loader import ConfigError, load_config, resolve_profile

GOOD_ROLE = "        id: m\n        backend: llamacpp\n        endpoint: http://127.0.0.1:9/v1\n"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(body)
    return path


def profile(roles: str) -> str:
    return f"version: 1\nauto_profiles: [p]\nprofiles:\n  p:\n    roles:\n{roles}"


# (yaml text, expected error after "<file>:")
BROKEN = [
    (
        profile("      router:\n" + GOOD_ROLE + "        colour: blue\n"),
        "profiles.p.roles.router.colour: unknown key 'colour'; allowed keys: id, backend, endpoint",
    ),
    (
        profile("      router:\n        id: m\n        backend: lmstduio\n"),
        "profiles.p.roles.router.backend: Input should be 'lmstudio', 'ollama', 'llamacpp', "
        "'vllm', 'openai' or 'embedded'; got 'lmstduio'",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        max_concurrency: 0\n"),
        "profiles.p.roles.router.max_concurrency: Input should be greater than 0; got 0",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        context_length: lots\n"),
        "profiles.p.roles.router.context_length: Input should be a valid integer, unable to parse "
        "string as an integer; got 'lots'",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        default_timeout: -5\n"),
        "profiles.p.roles.router.default_timeout: Input should be greater than 0; got -5",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        fallback: [coder]\n"),
        "profiles.p.roles.router.fallback[0]: 'coder' is not a role of this profile; defined "
        "roles: router",
    ),
    (
        profile(
            "      a:\n"
            + GOOD_ROLE
            + "        fallback: [b]\n      b:\n"
            + GOOD_ROLE
            + "        fallback: [a]\n"
        ),
        "profiles.p.roles.b.fallback: fallback cycle a -> b -> a; fallback chains must end",
    ),
    (
        profile(
            "      router:\n" + GOOD_ROLE + "      validation:\n        shares_instance_with: "
            "router\n        id: other-model\n"
        ),
        "profiles.p.roles.validation.id: 'other-model' differs from role 'router' whose instance "
        "it shares ('m'); omit it or make them equal",
    ),
    (
        profile(
            "      router:\n" + GOOD_ROLE + "      validation:\n        shares_instance_with: "
            "router\n        endpoint: http://elsewhere/v1\n"
        ),
        "profiles.p.roles.validation.endpoint: 'http://elsewhere/v1' differs from role 'router'",
    ),
    (
        profile(
            "      router:\n" + GOOD_ROLE + "      validation:\n        shares_instance_with: "
            "rooter\n"
        ),
        "profiles.p.roles.validation.shares_instance_with: 'rooter' is not a role of this profile",
    ),
    (
        profile(
            "      router:\n" + GOOD_ROLE + "      validation:\n        shares_instance_with: "
            "router\n        max_concurrency: 9\n"
        ),
        "profiles.p.roles.validation.max_concurrency: 9 exceeds the shared instance's "
        "max_concurrency (1 on role 'router'); a sharing role may only lower it",
    ),
    (
        profile("      router:\n        backend: llamacpp\n"),
        "profiles.p.roles.router.id: missing; a role that does not share an instance must name",
    ),
    (
        "version: 1\nauto_profiles: [nope]\nprofiles: {}\n",
        "auto_profiles: profile 'nope' is not defined",
    ),
    ("version: 1\nprofiles:\n  p: [1, 2\n", "invalid YAML at line"),
]


MANAGED = "        backend: llamacpp\n        model_path: m.gguf\n"
BROKEN += [
    (
        profile("      router:\n" + GOOD_ROLE + "        idle_ttl: 60\n"),
        "profiles.p.roles.router.idle_ttl: only applies to residency: on_demand (a pinned instance "
        "is never unloaded); remove it or set residency: on_demand",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        residency: on_demand\n"),
        "profiles.p.roles.router.residency: on_demand needs a backend localroute can load and "
        "unload (lmstudio, ollama, or llamacpp with a model_path (a server localroute starts)); "
        "backend 'llamacpp' with an endpoint loads its model itself: use residency: pinned",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        residency: sometimes\n"),
        "profiles.p.roles.router.residency: Input should be 'pinned' or 'on_demand'; got "
        "'sometimes'",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "      validation:\n        shares_instance_with: "
                "router\n        residency: on_demand\n"),
        "profiles.p.roles.validation.residency: describes the loaded instance, which role 'router' "
        "owns; set it there",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        substitutes: [router]\n"),
        "profiles.p.roles.router.substitutes[0]: 'router' is not another role of this profile; "
        "defined roles: router",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        model_path: m.gguf\n"),
        "profiles.p.roles.router.endpoint: a role with a model_path is served by a llama.cpp "
        "server localroute starts on a free port",
    ),
    (
        profile("      router:\n        backend: ollama\n        model_path: m.gguf\n"),
        "profiles.p.roles.router.model_path: only backend 'llamacpp' starts a server for a local "
        "GGUF file, not 'ollama'",
    ),
    (
        profile("      router:\n" + GOOD_ROLE + "        chat_format: gemma\n"),
        "profiles.p.roles.router.chat_format: only applies to a managed llama.cpp server",
    ),
    (
        profile("      router:\n" + MANAGED + "    residency:\n      stop_grace: 1\n"),
        "profiles.p.residency.stop_grace: unknown key 'stop_grace'; allowed keys: loading_notes",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_file_gives_one_precise_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert expected in message
    assert "\n" not in message


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found; pass --config PATH"):
        load_config(tmp_path / "absent.yaml")


def test_packaged_profiles_resolve() -> None:
    config, source = load_config()
    m4 = resolve_profile(config, "m4max", source, env={})
    assert set(m4.roles) == {
        "router",
        "validation",
        "reasoning",
        "reasoning_heavy",
        "coding",
        "coding_large_context",
        "summarization",
    }
    validation = m4.role("validation")
    assert (validation.id, validation.endpoint) == (
        m4.role("router").id,
        m4.role("router").endpoint,
    )
    assert (validation.max_concurrency, validation.context_length) == (3, 16384)
    # The pinned router holds 16K x 4 slots so the 80B on-demand model fits beside it.
    assert validation.instance == "router" and validation.instance_context_length == 16384
    assert m4.role("reasoning").system_prompt.value == "merge_into_user"
    # Residency: the router (and validation on it) pinned, the rest loaded on demand.
    assert {r.name for r in m4.roles.values() if not r.on_demand} == {"router", "validation"}
    assert validation.residency.value == "pinned"
    assert m4.role("reasoning").substitutes == ("reasoning_heavy",)
    assert m4.memory_budget_gb == 96 and m4.min_residency == 60
    embedded = resolve_profile(config, "embedded", source, env={})
    assert {r.backend.value for r in embedded.roles.values()} == {"embedded"}
    assert {r.instance for r in embedded.roles.values()} == {"router"}


def test_managed_role_is_named_after_its_file_relative_to_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, profile("      router:\n" + MANAGED + "        residency: on_demand\n"
                                   "        idle_ttl: 30\n      validation:\n"
                                   "        shares_instance_with: router\n"))
    config, source = load_config(path)
    p = resolve_profile(config, "p", source, env={})
    router, validation = p.role("router"), p.role("validation")
    assert router.id == "m" and router.model_path == str(tmp_path / "m.gguf") and router.managed
    assert router.endpoint is None and router.on_demand and router.idle_ttl == 30
    # The sharing role carries the instance's residency (it rides on the same process).
    assert validation.managed and validation.on_demand and validation.idle_ttl == 30


def test_modes_yaml_budget_keys_moved_to_models_yaml(tmp_path: Path) -> None:
    from localroute.config.modes import PACKAGED_MODES, load_modes

    text = PACKAGED_MODES.read_text().replace("  cold_load_extra_s: 120",
                                              "  memory_budget_gb: {m4max: 128}\n"
                                              "  cold_load_extra_s: 120")
    path = tmp_path / "modes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"'memory_budget_gb' moved to models.yaml "
                       r"\(profiles.<name>.memory_budget_gb\); remove it here"):
        load_modes(path)


def test_environment_overrides_reach_sharing_roles() -> None:
    config, source = load_config()
    env = {
        "LOCALROUTE_ROUTER_ENDPOINT": "http://10.0.0.1:1234/v1",
        "LOCALROUTE_ROUTER_MODEL": "qwen3-4b-mlx",
    }
    m4 = resolve_profile(config, "m4max", source, env=env)
    assert m4.role("router").endpoint == "http://10.0.0.1:1234/v1"
    assert m4.role("validation").id == "qwen3-4b-mlx"
    assert m4.role("coding").endpoint == "http://localhost:1234/v1"


def test_unknown_profile_and_role_are_named() -> None:
    config, source = load_config()
    with pytest.raises(ConfigError, match="profile 'm5' is not defined; defined: embedded, m4max"):
        resolve_profile(config, "m5", source, env={})
    with pytest.raises(KeyError, match="role 'poet' is not defined in profile 'm4max'"):
        resolve_profile(config, "m4max", source, env={}).role("poet")


@pytest.mark.parametrize("via_env", [False, True])
def test_cli_exits_2_with_one_line(tmp_path: Path, via_env: bool) -> None:
    text, expected = BROKEN[1]
    path = write(tmp_path, text)
    args = [sys.executable, "-m", "localroute", "models"]
    env = {"PATH": "/usr/bin:/bin", "LOCALROUTE_CONFIG": str(path)} if via_env else None
    if not via_env:
        args[3:3] = ["--config", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{path}:{expected}" in lines[0]
