"""Which discovered model should play which role, and why: pure functions of what servers said.

Rules (README "Your own models"): a small general instruct model routes, summarises and (on the
router's instance) validates; a model named as a reasoning model (R1, QwQ, "thinking") reasons;
a coder codes, and the coder with the largest context takes coding_large_context; the largest
general model is reasoning_heavy. A role with no model of its kind takes the nearest general
one, and roles given the same model share one loaded instance (`shares_instance_with`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, Field

from localroute.backends.discovery import FoundServer
from localroute.backends.server_facts import FoundModel
from localroute.config.schema import ROLE_NAMES

# Owner order: when roles share a model, the first of these owns the loaded instance.
ROLE_ORDER = ("router", "reasoning", "reasoning_heavy", "coding", "coding_large_context",
              "summarization", "validation")
assert set(ROLE_ORDER) == set(ROLE_NAMES)
SMALL_PARAMS = 8.5e9  # "small" = up to the 7-8B class: quick enough for every request
_REASONER = re.compile(
    r"(?i)(?:^|[^a-z0-9])(?:r1|qwq|thinking|think|reasoning|reasoner)(?=[^a-z]|$)")
_EMBEDDING = re.compile(r"(?i)embed|rerank")
_NAME_PARAMS = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")


class Candidate(BaseModel):
    """A model on a server, numbered for the person choosing, with its traits."""

    key: str
    backend: str
    endpoint: str
    server: str
    model: FoundModel
    params: float | None  # reported, else read from the name
    coder: bool
    reasoner: bool
    embedding: bool

    @property
    def scale(self) -> float | None:
        """Parameters, or (unreported) an estimate from the file size at ~4 bits per weight."""
        if self.params:
            return self.params
        return self.model.size_bytes * 2.0 if self.model.size_bytes else None

    @property
    def general(self) -> bool:
        return not (self.coder or self.reasoner or self.embedding)

    def label(self) -> str:
        return f"{self.model.id} ({self.backend} at {self.endpoint})"


class RoleChoice(BaseModel):
    role: str
    key: str  # the Candidate it uses
    why: str
    shares_with: str | None = None  # the role that owns the instance, when not itself


class Proposal(BaseModel):
    roles: dict[str, RoleChoice]
    notes: list[str] = Field(default_factory=list)


def name_params(model_id: str) -> float | None:
    """Parameters spelled in a model name: 'qwen3-coder-30b-a3b' -> 30e9, 'mixtral-8x7b' ->
    56e9, 'smollm2-135m' -> 135e6 (the total, not the active count, is what memory holds)."""
    best = None
    for experts, number, unit in _NAME_PARAMS.findall(model_id.lower()):
        value = float(number) * (1e9 if unit == "b" else 1e6) * (int(experts) if experts else 1)
        best = value if best is None else max(best, value)
    return best


def is_coder(model_id: str) -> bool:
    tokens = re.split(r"[^a-z0-9]+", model_id.lower())
    return any(("coder" in t and t != "decoder") or t.startswith("code")
               or t in ("devstral", "codestral") for t in tokens)


def candidates(servers: Iterable[FoundServer]) -> list[Candidate]:
    out: list[Candidate] = []
    for server in servers:
        for model in server.models:
            out.append(Candidate(
                key=str(len(out) + 1), backend=server.kind, endpoint=server.base_url,
                server=server.flavour, model=model,
                params=model.params or name_params(model.id),
                coder=is_coder(model.id), reasoner=bool(_REASONER.search(model.id)),
                embedding=model.type == "embedding" or bool(_EMBEDDING.search(model.id)),
            ))
    return out


def _largest(pool: list[Candidate]) -> Candidate:
    return max(pool, key=lambda c: (c.scale is not None, c.scale or 0.0))


def _smallest(pool: list[Candidate]) -> Candidate:
    return min(pool, key=lambda c: (c.scale is None, c.scale or 0.0))


def _context(c: Candidate) -> int:
    return c.model.context_length if c.model.context_fixed and c.model.context_length \
        else (c.model.max_context or c.model.context_length or 0)


def _size(c: Candidate) -> str:
    return f"{c.scale / 1e9:.3g}B parameters" if c.scale else "size not reported"


def propose(cands: list[Candidate], excluded: dict[str, str] | None = None) -> Proposal:
    """A role for every role name. `excluded` maps candidate keys to why they are left out
    (too large for the memory budget on their own); they are used only if nothing else is."""
    excluded = excluded or {}
    chat = [c for c in cands if not c.embedding]
    if not chat:
        raise ValueError("the servers list only embedding models; load a chat model first")
    usable = [c for c in chat if c.key not in excluded]
    notes = [f"{c.label()}: not proposed, {excluded[c.key]}" for c in chat if c.key in excluded]
    if not usable:
        usable, notes = chat, ["every chat model needs more than the memory budget on its own; "
                               "proposed anyway (load one at a time, or lower the contexts)"]
    if len(usable) == 1:
        only = usable[0]
        why = f"the only chat model found ({_size(only)}): every role uses it"
        return share(Proposal(roles={r: RoleChoice(role=r, key=only.key, why=why)
                                     for r in ROLE_ORDER}, notes=notes))
    general = [c for c in usable if c.general]
    small = [c for c in general if c.scale is not None and c.scale <= SMALL_PARAMS]
    picks: dict[str, tuple[Candidate, str]] = {}
    if small:
        picks["router"] = (_largest(small), "the largest small (<= 8B) general instruct model: "
                           "quick enough for every request, good enough to route")
    elif general:
        picks["router"] = (_smallest(general), "the smallest general instruct model found")
    else:
        picks["router"] = (_smallest(usable), "no general instruct model found: the smallest one")
    router = picks["router"][0]
    smaller = [c for c in small if c.key != router.key]
    picks["summarization"] = (
        (_smallest(smaller), "the smallest general model: condenses tool output fast")
        if smaller else (router, "the router's model (no second small general model)"))
    picks["validation"] = (router, "the router's loaded instance, at temperature 0")
    reasoners = [c for c in usable if c.reasoner]
    big_general = general or [c for c in usable if not c.coder] or usable
    picks["reasoning"] = (
        (_largest(reasoners), "named as a reasoning model (R1 / QwQ / thinking), the largest")
        if reasoners else (_largest(big_general), "no reasoning model found: the largest "
                                                  "general model"))
    picks["reasoning_heavy"] = (_largest(general + reasoners or usable),
                                "the largest general model")
    coders = [c for c in usable if c.coder]
    if coders:
        wide = max(coders, key=lambda c: (_context(c), c.scale or 0.0))
        rest = [c for c in coders if c.key != wide.key]
        picks["coding_large_context"] = (wide, f"the coder with the largest context "
                                               f"(up to {_context(wide)} tokens)")
        picks["coding"] = ((_largest(rest), "a coder (the largest besides the long-context one)")
                           if rest else (wide, "the only coder found"))
    else:
        picks["coding"] = (_largest(big_general), "no coder found: the largest general model")
        picks["coding_large_context"] = (max(usable, key=lambda c: (_context(c), c.scale or 0)),
                                         "no coder found: the model with the largest context")
    roles = {r: RoleChoice(role=r, key=picks[r][0].key, why=picks[r][1]) for r in ROLE_ORDER}
    return share(Proposal(roles=roles, notes=notes))


def share(proposal: Proposal) -> Proposal:
    """Roles on the same model share one instance, owned by the first of them in ROLE_ORDER."""
    owners: dict[str, str] = {}
    roles = {}
    for name in ROLE_ORDER:
        choice = proposal.roles[name]
        owner = owners.setdefault(choice.key, name)
        roles[name] = choice.model_copy(update={"shares_with": None if owner == name else owner})
    return proposal.model_copy(update={"roles": roles})


def assign(proposal: Proposal, role: str, key: str, why: str = "chosen by you") -> Proposal:
    """The proposal with `role` moved to candidate `key` (sharing recomputed)."""
    if role not in proposal.roles:
        raise ValueError(f"unknown role '{role}'; roles: {', '.join(ROLE_ORDER)}")
    roles = dict(proposal.roles)
    if role == "router" and roles["validation"].key == roles["router"].key:
        # Validation rides on the router's instance: it follows the router unless moved itself.
        roles["validation"] = roles["validation"].model_copy(update={"key": key})
    roles[role] = RoleChoice(role=role, key=key, why=why)
    return share(proposal.model_copy(update={"roles": roles}))


def instances(proposal: Proposal) -> dict[str, list[str]]:
    """Owner role -> every role on its instance (itself first)."""
    out: dict[str, list[str]] = {}
    for name, choice in proposal.roles.items():
        out.setdefault(choice.shares_with or name, []).append(name)
    return out
