"""The models.yaml keys of each proposed role, and the reason for each figure (pure).

Only keys the schema already has are written. A role that shares an instance inherits its id,
backend, endpoint, context and concurrency, and sets its own sampling and answer budget.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from localroute.onboarding.proposal import ROLE_ORDER, Candidate, Proposal, instances

CONTEXT_CAP = 32_768  # what a role is loaded with when the server lets the load choose
LARGE_CONTEXT_CAP = 131_072  # coding_large_context
UNKNOWN_CONTEXT = 4096  # the schema's default, and Ollama's default context on most machines

# max_tokens, temperature, top_p, default_timeout: the packaged m4max profile's choices, with
# longer timeouts because a model on someone's own machine may be slower than an M4 Max.
ROLE_DEFAULTS: dict[str, tuple[int, float, float, float]] = {
    "router": (1024, 0.7, 0.9, 60),
    "validation": (512, 0.0, 1.0, 60),
    "summarization": (512, 0.7, 0.9, 60),
    "reasoning": (4096, 0.6, 0.95, 180),
    "reasoning_heavy": (4096, 0.6, 0.95, 180),
    "coding": (4096, 0.2, 0.95, 120),
    "coding_large_context": (4096, 0.2, 0.95, 180),
}
FALLBACKS = {"reasoning": "reasoning_heavy", "coding": "coding_large_context",
             "summarization": "router"}


class RoleSettings(BaseModel):
    role: str
    key: str
    values: dict[str, Any]  # in the order they are written
    why: list[str] = Field(default_factory=list)  # one line per choice worth explaining


def desired_context(c: Candidate, role: str) -> tuple[int, str]:
    """The context this role wants on this model, and where the figure comes from."""
    m = c.model
    if m.context_fixed and m.context_length:
        return m.context_length, m.context_source
    if c.backend == "ollama":
        return UNKNOWN_CONTEXT, (
            "Ollama's /v1 runs a model that is not loaded at the server's default context "
            "(OLLAMA_CONTEXT_LENGTH, 4096 on most machines); bake num_ctx into a Modelfile and "
            "set context_length to it")
    if m.max_context:
        value = min(m.max_context, LARGE_CONTEXT_CAP if role == "coding_large_context"
                    else CONTEXT_CAP)
        return value, (f"not loaded yet: `localroute load` loads it at this context "
                       f"(the model allows {m.max_context})")
    return UNKNOWN_CONTEXT, (f"the server does not report a context limit: {UNKNOWN_CONTEXT} "
                             "assumed; set it to what the server holds")


def _is_r1(model_id: str) -> bool:
    lowered = model_id.lower()
    return "deepseek-r1" in lowered or "r1-distill" in lowered


def role_settings(proposal: Proposal, cands: dict[str, Candidate]) -> dict[str, RoleSettings]:
    """Every role's keys, owners with their instance's figures, sharing roles without them."""
    groups = instances(proposal)
    contexts: dict[str, tuple[int, str]] = {}
    for owner, members in groups.items():
        c = cands[proposal.roles[owner].key]
        contexts[owner] = max((desired_context(c, r) for r in members), key=lambda x: x[0])
    out: dict[str, RoleSettings] = {}
    for role in ROLE_ORDER:
        choice = proposal.roles[role]
        c = cands[choice.key]
        owner = choice.shares_with or role
        context, context_why = contexts[owner]
        max_tokens, temperature, top_p, timeout = ROLE_DEFAULTS[role]
        values: dict[str, Any] = {}
        why = [f"why: {choice.why}"]
        if choice.shares_with is None:
            slots = c.model.slots if c.backend == "llamacpp" and c.model.slots else 1
            values |= {"id": c.model.id, "backend": c.backend, "endpoint": c.endpoint}
            if c.model.quantization:
                values["quantization"] = c.model.quantization
            values |= {"context_length": context, "max_concurrency": slots}
            why.append(f"context_length {context}: {context_why}")
            why.append(f"max_concurrency {slots}: " + (
                "the server's parallel slots" if slots > 1 else
                "one request at a time; raise it to the parallel requests your server runs"))
        else:
            values["shares_instance_with"] = choice.shares_with
            why.append(f"same loaded instance as {choice.shares_with} (context {context})")
        budget = min(max_tokens, max(256, context // 2))  # the answer must leave room to ask
        values |= {"default_timeout": timeout, "max_tokens": budget, "temperature": temperature,
                   "top_p": top_p}
        if c.model.supports_tools:
            values["supports_tools"] = True
            why.append("supports_tools: the server says the model was trained for tool calls")
        if c.reasoner:
            values["reasoning"] = True
        if _is_r1(c.model.id):
            values["system_prompt"] = "merge_into_user"
            why.append("system_prompt merge_into_user: DeepSeek-R1 wants no system prompt")
        target = FALLBACKS.get(role)
        if target and (proposal.roles[target].shares_with or target) != owner:
            values["fallback"] = [target]
        out[role] = RoleSettings(role=role, key=choice.key, values=values, why=why)
    return out
