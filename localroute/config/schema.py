"""The schema of `models.yaml`: profiles of roles, each role a model on a backend."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

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


class ProfileConfig(_Strict):
    description: str = ""
    roles: dict[str, RoleConfig]


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


class ResolvedProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    source: str  # the file the profile came from
    roles: dict[str, ResolvedRole]

    def role(self, name: str) -> ResolvedRole:
        try:
            return self.roles[name]
        except KeyError:
            known = ", ".join(sorted(self.roles))
            raise KeyError(
                f"role '{name}' is not defined in profile '{self.name}' ({self.source}); "
                f"defined roles: {known}"
            ) from None
