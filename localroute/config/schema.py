"""The schema of `models.yaml`: profiles of roles, each role a model on a backend."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)

ROLE_NAMES = (
    "router",
    "reasoning",
    "coding",
    "coding_large_context",
    "reasoning_heavy",
    "summarization",
    "validation",
)


class BackendKind(StrEnum):
    lmstudio = "lmstudio"
    ollama = "ollama"
    llamacpp = "llamacpp"
    vllm = "vllm"
    openai = "openai"
    embedded = "embedded"


class SystemPromptPolicy(StrEnum):
    """How a role takes a system prompt (DeepSeek-R1 wants none: merged into the user turn)."""

    keep = "keep"
    merge_into_user = "merge_into_user"


class ResidencyKind(StrEnum):
    """Whether localroute keeps a role's instance loaded, or loads it when a request needs it."""

    pinned = "pinned"
    on_demand = "on_demand"


# Keys that describe the loaded instance: set only on the role that owns it.
INSTANCE_KEYS = ("residency", "idle_ttl", "load_timeout", "model_path", "chat_format", "threads",
                 "memory_gb")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleConfig(_Strict):
    """One role of a profile. A role that `shares_instance_with` another may omit `id`,
    `backend` and `endpoint`: it inherits them from that role's instance."""

    id: str | None = None
    backend: BackendKind | None = None
    endpoint: str | None = None
    api_key: str | None = None
    quantization: str = "unknown"
    context_length: PositiveInt = 4096
    max_concurrency: PositiveInt = 1
    default_timeout: PositiveFloat = 60.0
    max_tokens: PositiveInt = 1024
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    supports_tools: bool = False
    reasoning: bool = False
    system_prompt: SystemPromptPolicy = SystemPromptPolicy.keep
    fallback: tuple[str, ...] = ()
    shares_instance_with: str | None = None
    retries: int = Field(default=2, ge=0, le=10)
    # Extra request fields the server understands (vLLM `chat_template_kwargs`, LM Studio `ttl`,
    # `top_k`, `tool_choice`...), sent as they are.
    extra_body: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    # Residency (docs/residency.md): set on the role that owns the instance.
    residency: ResidencyKind = ResidencyKind.pinned
    idle_ttl: PositiveFloat | None = None  # on_demand only: unload after this many idle seconds
    load_timeout: PositiveFloat = 300.0  # seconds a load (or a managed server's start) may take
    memory_gb: PositiveFloat | None = None  # the instance's footprint when the planner cannot say
    # A local GGUF file served by a llama.cpp server localroute starts itself (backend llamacpp).
    model_path: str | None = None
    chat_format: str | None = None  # the managed server's chat format (a GGUF without a template)
    threads: PositiveInt | None = None  # the managed server's CPU threads
    # Routing: roles that may answer in this one's place while it is not resident, when the
    # expected wait for its load is above max_wait seconds.
    substitutes: tuple[str, ...] = ()
    max_wait: NonNegativeFloat = 10.0


class ResidencySettings(_Strict):
    """A profile's residency switches (docs/residency.md)."""

    loading_notes: bool = True  # a streamed answer that waits for a load says so first
    os_reserve_gb: PositiveFloat = 4.0  # Linux default budget: RAM minus max(this, 15 %)
    max_overtake_s: PositiveFloat = 30.0  # a request waiting for a load is overtaken this long
    queue_timeout_s: PositiveFloat = 600.0  # the longest a request waits for its model
    memory_recovery_s: NonNegativeFloat = 10.0  # wait for free memory after an unload
    stop_grace_s: PositiveFloat = 10.0  # SIGTERM, then SIGKILL after this many seconds
    # How far ahead recent use predicts the next request: short keeps the models' rates apart
    # (over a long horizon every model in use looks certain to be needed).
    usage_horizon_s: PositiveFloat = 60.0
    load_bandwidth_gb_s: PositiveFloat = 2.0  # load-time estimate before one is measured
    load_overhead_s: NonNegativeFloat = 2.0  # ... plus this fixed start cost


class ProfileConfig(_Strict):
    description: str = ""
    roles: dict[str, RoleConfig]
    # None: the machine's default (macOS GPU wired limit, Linux RAM minus the OS reserve).
    memory_budget_gb: PositiveFloat | None = None
    min_residency: NonNegativeFloat = 30.0  # seconds a fresh instance is safe from eviction
    residency: ResidencySettings = ResidencySettings()


class StackConfig(_Strict):
    version: Literal[1] = 1
    # Profiles probed in this order when none is chosen; the last one is used if none answers.
    auto_profiles: tuple[str, ...] = ("m4max", "embedded")
    profiles: dict[str, ProfileConfig]


class ResolvedRole(BaseModel):
    """A role after inheritance from its shared instance and environment overrides."""

    model_config = ConfigDict(frozen=True)

    name: str
    id: str
    backend: BackendKind
    endpoint: str | None
    api_key: str | None
    quantization: str
    context_length: int
    max_concurrency: int
    default_timeout: float
    max_tokens: int
    temperature: float
    top_p: float
    supports_tools: bool
    reasoning: bool
    system_prompt: SystemPromptPolicy
    fallback: tuple[str, ...]
    instance: str  # name of the role that owns the loaded instance (itself unless shared)
    instance_context_length: int  # the loaded instance's context (a sharing role may use less)
    extra_body: dict[str, Any]
    retries: int
    # The instance's residency (a sharing role carries its owner's).
    residency: ResidencyKind = ResidencyKind.pinned
    idle_ttl: float | None = None
    load_timeout: float = 300.0
    memory_gb: float | None = None
    model_path: str | None = None  # absolute path of a managed llama.cpp instance's GGUF
    chat_format: str | None = None
    threads: int | None = None
    substitutes: tuple[str, ...] = ()
    max_wait: float = 10.0

    @property
    def managed(self) -> bool:
        """A llama.cpp server localroute starts and stops itself (model_path, no endpoint)."""
        return self.backend == BackendKind.llamacpp and self.model_path is not None

    @property
    def on_demand(self) -> bool:
        return self.residency == ResidencyKind.on_demand


class ResolvedProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    source: str  # the file the profile came from
    roles: dict[str, ResolvedRole]
    memory_budget_gb: float | None = None
    min_residency: float = 30.0
    residency: ResidencySettings = ResidencySettings()

    def role(self, name: str) -> ResolvedRole:
        try:
            return self.roles[name]
        except KeyError:
            known = ", ".join(sorted(self.roles))
            raise KeyError(
                f"role '{name}' is not defined in profile '{self.name}' ({self.source}); "
                f"defined roles: {known}"
            ) from None
