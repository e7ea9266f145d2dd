"""Loading `models.yaml`: parse, validate, resolve shared instances and environment overrides.

Every problem becomes a `ConfigError` whose message is one line naming the file, the key path,
the bad value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from pydantic import BaseModel, ValidationError

from localroute.config.schema import (
    INSTANCE_KEYS,
    BackendKind,
    ProfileConfig,
    ResidencyKind,
    ResidencySettings,
    ResolvedProfile,
    ResolvedRole,
    RoleConfig,
    StackConfig,
)

PACKAGED_MODELS = Path(__file__).with_name("models.yaml")
CONFIG_ENV = "LOCALROUTE_CONFIG"
PROFILE_ENV = "LOCALROUTE_PROFILE"
# Where `localroute init` writes the user's models.yaml; the env var moves it (tests, and people
# who keep their configuration elsewhere).
CONFIG_DIR_ENV = "LOCALROUTE_CONFIG_DIR"
USER_CONFIG_NAME = "models.yaml"


class ConfigError(ValueError):
    """A configuration problem, with the file and key path that hold it."""

    def __init__(self, file: str, key_path: str, message: str) -> None:
        self.file = file
        self.key_path = key_path
        super().__init__(f"{file}:{key_path}: {message}" if key_path else f"{file}: {message}")


def user_config_file(env: Mapping[str, str] | None = None) -> Path:
    """The user's models.yaml: $LOCALROUTE_CONFIG_DIR/models.yaml, else the platform's user
    config directory (platformdirs: ~/.config/localroute on Linux, ~/Library/Application
    Support/localroute on macOS)."""
    env = os.environ if env is None else env
    explicit = env.get(CONFIG_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser() / USER_CONFIG_NAME
    return Path(platformdirs.user_config_dir("localroute")) / USER_CONFIG_NAME


def config_origin(
    explicit: str | Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, str]:
    """The config file to use and where that choice came from, in this order: the explicit path
    (--config), $LOCALROUTE_CONFIG, the user's file when it exists, the packaged default."""
    env = os.environ if env is None else env
    from_env = env.get(CONFIG_ENV)
    if explicit:
        same = from_env is not None and str(explicit) == from_env
        return Path(explicit).expanduser(), CONFIG_ENV if same else "--config"
    if from_env:
        return Path(from_env).expanduser(), CONFIG_ENV
    user = user_config_file(env)
    if user.is_file():
        return user, "user"
    return PACKAGED_MODELS, "packaged"


def config_path(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The config file to use (see `config_origin` for the order)."""
    return config_origin(explicit, env)[0]


def describe_origin(path: Path, origin: str) -> str:
    """One line saying which models.yaml is in use and why, for `models` and `doctor`."""
    if origin == "user":
        return f"config: {path} (your file, read by default; written by `localroute init`)"
    if origin == "packaged":
        return (f"config: {path} (the packaged default; `localroute init` writes one for the "
                "model servers you run)")
    return f"config: {path} (chosen with {origin})"


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_validation_error(
    file: str, exc: ValidationError, root: type[BaseModel]
) -> ConfigError:
    """The first problem of a pydantic error as one line (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return ConfigError(file, _format_loc(tuple(first["loc"])), _describe(first, root) + more)


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel]:
    """The schema class that owns the last key of a location (for listing allowed keys)."""
    model: type[BaseModel] = root
    if root is not StackConfig:
        # Walk nested models by field annotation (modes.yaml and other flat schemas).
        for key in loc[:-1]:
            field = model.model_fields.get(str(key))
            ann = field.annotation if field else None
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                model = ann
        return model
    i = 0
    while i < len(loc) - 1:
        key = loc[i]
        if model is StackConfig and key == "profiles":
            model, i = ProfileConfig, i + 2
        elif model is ProfileConfig and key == "roles":
            model, i = RoleConfig, i + 2
        elif model is ProfileConfig and key == "residency":
            model, i = ResidencySettings, i + 1
        else:
            break
    return model


def _describe(err: Any, root: type[BaseModel]) -> str:
    loc = tuple(err["loc"])
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(_model_at(loc, root).model_fields)
        return f"unknown key '{loc[-1]}'; allowed keys: {allowed}"
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    return f"{err['msg']}; got {shown}"


def load_config(path: str | Path | None = None) -> tuple[StackConfig, str]:
    """Read and validate a models.yaml; returns the config and the file name used in errors."""
    file = config_path(path)
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            name, "", "file not found; pass --config PATH or set LOCALROUTE_CONFIG to a models.yaml"
        ) from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read the file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(name, "", f"invalid YAML at {where}{problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(name, "", "the top level must be a mapping with a 'profiles' key")
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(name, exc, StackConfig) from None
    _check_semantics(config, name)
    return config, name


def _check_semantics(config: StackConfig, file: str) -> None:
    for auto in config.auto_profiles:
        if auto not in config.profiles:
            raise ConfigError(
                file,
                "auto_profiles",
                f"profile '{auto}' is not defined; defined: " + ", ".join(sorted(config.profiles)),
            )
    for pname, profile in config.profiles.items():
        base = f"profiles.{pname}.roles"
        defined = ", ".join(sorted(profile.roles))
        for rname, role in profile.roles.items():
            for i, target in enumerate(role.fallback):
                if target not in profile.roles:
                    raise ConfigError(
                        file,
                        f"{base}.{rname}.fallback[{i}]",
                        f"'{target}' is not a role of this profile; defined roles: {defined}",
                    )
            _check_instance(profile, rname, role, f"{base}.{rname}", file)
            _check_residency(profile, rname, role, f"{base}.{rname}", file)
        _check_cycles(profile, base, file)


# Backends whose instances localroute can load and unload (docs/residency.md).
LOADABLE = "lmstudio, ollama, or llamacpp with a model_path (a server localroute starts)"


def _check_residency(
    profile: ProfileConfig, rname: str, role: RoleConfig, path: str, file: str
) -> None:
    defined = ", ".join(sorted(profile.roles))
    for i, target in enumerate(role.substitutes):
        if target not in profile.roles or target == rname:
            raise ConfigError(file, f"{path}.substitutes[{i}]",
                              f"'{target}' is not another role of this profile; defined roles: "
                              f"{defined}")
    if role.shares_instance_with is not None:
        for key in INSTANCE_KEYS:
            if key in role.model_fields_set:
                raise ConfigError(file, f"{path}.{key}",
                                  f"describes the loaded instance, which role "
                                  f"'{role.shares_instance_with}' owns; set it there")
        return
    if role.model_path is not None:
        if role.backend != BackendKind.llamacpp:
            raise ConfigError(file, f"{path}.model_path",
                              f"only backend 'llamacpp' starts a server for a local GGUF file, "
                              f"not '{role.backend.value if role.backend else None}'; set "
                              "backend: llamacpp or remove model_path")
        if role.endpoint is not None:
            raise ConfigError(file, f"{path}.endpoint",
                              "a role with a model_path is served by a llama.cpp server "
                              "localroute starts on a free port; remove the endpoint (or the "
                              "model_path to use a server you run yourself)")
    else:
        for key in ("chat_format", "threads"):
            if key in role.model_fields_set:
                raise ConfigError(file, f"{path}.{key}",
                                  "only applies to a managed llama.cpp server; set model_path "
                                  "(a local .gguf file) too, or remove it")
    if role.residency == ResidencyKind.pinned:
        if role.idle_ttl is not None:
            raise ConfigError(file, f"{path}.idle_ttl",
                              "only applies to residency: on_demand (a pinned instance is never "
                              "unloaded); remove it or set residency: on_demand")
        return
    loadable = role.backend in (BackendKind.lmstudio, BackendKind.ollama) or (
        role.backend == BackendKind.llamacpp and role.model_path is not None)
    if not loadable:
        raise ConfigError(file, f"{path}.residency",
                          f"on_demand needs a backend localroute can load and unload ({LOADABLE});"
                          f" backend '{role.backend.value if role.backend else None}'"
                          + (" with an endpoint" if role.endpoint else "")
                          + " loads its model itself: use residency: pinned")


def _check_instance(
    profile: ProfileConfig, rname: str, role: RoleConfig, path: str, file: str
) -> None:
    target = role.shares_instance_with
    if target is None:
        # A managed llama.cpp instance is named after its file when it has no id.
        needed = ("backend",) if role.model_path is not None else ("id", "backend")
        for key in needed:
            if getattr(role, key) is None:
                raise ConfigError(
                    file,
                    f"{path}.{key}",
                    "missing; a role that does not "
                    "share an instance must name its model 'id' and 'backend'",
                )
        return
    if target not in profile.roles:
        raise ConfigError(
            file,
            f"{path}.shares_instance_with",
            f"'{target}' is not a role of "
            "this profile; defined roles: " + ", ".join(sorted(profile.roles)),
        )
    owner = profile.roles[target]
    if owner.shares_instance_with is not None:
        raise ConfigError(
            file,
            f"{path}.shares_instance_with",
            f"'{target}' itself shares "
            f"'{owner.shares_instance_with}'; point at the role that owns "
            "the instance",
        )
    for key in ("id", "backend", "endpoint"):
        mine, theirs = getattr(role, key), getattr(owner, key)
        if mine is not None and mine != theirs:
            shown = mine.value if hasattr(mine, "value") else mine
            raise ConfigError(
                file,
                f"{path}.{key}",
                f"'{shown}' differs from role '{target}' "
                f"whose instance it shares ('{getattr(theirs, 'value', theirs)}'); "
                "omit it or make them equal",
            )
    for key in ("max_concurrency", "context_length"):
        if key in role.model_fields_set and getattr(role, key) > getattr(owner, key):
            raise ConfigError(
                file,
                f"{path}.{key}",
                f"{getattr(role, key)} exceeds the shared "
                f"instance's {key} ({getattr(owner, key)} on role '{target}'); "
                "a sharing role may only lower it",
            )


def _check_cycles(profile: ProfileConfig, base: str, file: str) -> None:
    # Depth-first search over fallback edges; a back edge is a cycle.
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in profile.roles[name].fallback:
            if state.get(target) == 1:
                cycle = " -> ".join([*trail[trail.index(target) :], target])
                raise ConfigError(
                    file,
                    f"{base}.{name}.fallback",
                    f"fallback cycle {cycle}; fallback chains must end",
                )
            if target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in profile.roles:
        if name not in state:
            visit(name, [name])


def resolve_profile(
    config: StackConfig, name: str, source: str, env: Mapping[str, str] | None = None
) -> ResolvedProfile:
    """Apply instance sharing and LOCALROUTE_<ROLE>_ENDPOINT / _MODEL overrides."""
    env = os.environ if env is None else env
    if name not in config.profiles:
        raise ConfigError(
            source,
            "profiles",
            f"profile '{name}' is not defined; defined: " + ", ".join(sorted(config.profiles)),
        )
    profile = config.profiles[name]
    base_dir = Path(source).parent if Path(source).is_file() else Path.cwd()
    resolved: dict[str, ResolvedRole] = {}
    # Owners first so sharing roles inherit their (already overridden) model and endpoint.
    order = sorted(profile.roles, key=lambda r: profile.roles[r].shares_instance_with is not None)
    for rname in order:
        role = profile.roles[rname]
        owner_name = role.shares_instance_with or rname
        prefix = f"LOCALROUTE_{rname.upper()}_"
        quantization, context_length = role.quantization, role.context_length
        max_concurrency = role.max_concurrency
        if role.shares_instance_with:
            owner = resolved[owner_name]
            model_id, backend, endpoint = owner.id, owner.backend, owner.endpoint
            api_key, quantization = owner.api_key, owner.quantization
            instance: dict[str, Any] = {k: getattr(owner, k) for k in INSTANCE_KEYS}
            # Unset limits inherit the instance's; set ones were checked to be lower.
            if "context_length" not in role.model_fields_set:
                context_length = owner.context_length
            if "max_concurrency" not in role.model_fields_set:
                max_concurrency = owner.max_concurrency
        else:
            assert role.backend is not None  # checked at load time
            model_path = _model_path(role.model_path, base_dir)
            default_id = role.id or (Path(model_path).stem if model_path else None)
            assert default_id is not None  # checked at load time
            model_id = env.get(prefix + "MODEL", default_id)
            backend, api_key = role.backend, role.api_key
            endpoint = env.get(prefix + "ENDPOINT", role.endpoint)
            if prefix + "ENDPOINT" in env:
                model_path = None  # a server the person runs replaces the managed one
            instance = {k: getattr(role, k) for k in INSTANCE_KEYS} | {"model_path": model_path}
        resolved[rname] = ResolvedRole(
            name=rname,
            id=model_id,
            backend=backend,
            endpoint=endpoint,
            api_key=api_key,
            quantization=quantization,
            context_length=context_length,
            max_concurrency=max_concurrency,
            instance_context_length=(
                resolved[owner_name].context_length
                if role.shares_instance_with
                else role.context_length
            ),
            default_timeout=role.default_timeout,
            max_tokens=role.max_tokens,
            temperature=role.temperature,
            top_p=role.top_p,
            supports_tools=role.supports_tools,
            reasoning=role.reasoning,
            system_prompt=role.system_prompt,
            fallback=role.fallback,
            instance=owner_name,
            retries=role.retries, extra_body=role.extra_body,
            substitutes=role.substitutes, max_wait=role.max_wait,
            **instance,
        )
    return ResolvedProfile(name=name, source=source, roles={r: resolved[r] for r in profile.roles},
                           memory_budget_gb=profile.memory_budget_gb,
                           min_residency=profile.min_residency, residency=profile.residency)


def _model_path(value: str | None, base_dir: Path) -> str | None:
    """A model_path made absolute: `~` expanded, relative paths from the config file's folder."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())
