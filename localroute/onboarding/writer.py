"""The models.yaml text `localroute init` writes: the proposal as YAML, every choice explained in
comments. Written by hand because YAML libraries keep no comments on output (PyYAML drops
them); every value still goes through `yaml.safe_dump` so model ids are quoted as YAML needs,
and comment text is stripped of line breaks so a server's strings cannot add keys.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

from localroute.backends.discovery import Probe
from localroute.config.loader import PACKAGED_MODELS
from localroute.onboarding.proposal import ROLE_ORDER, Candidate, Proposal
from localroute.onboarding.settings import RoleSettings
from localroute.onboarding.sizing import PROFILE
from localroute.resources.planner import GIB, StackPlan

WIDTH = 99
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def scalar(value: Any) -> str:
    """One YAML flow value (quoted where YAML needs it)."""
    out = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return out.removesuffix("\n...\n").strip()


def comment(text: str, indent: int = 0, hanging: int = 0) -> list[str]:
    prefix = " " * indent + "# "
    clean = _CONTROL.sub(" ", text)
    return textwrap.wrap(clean, WIDTH - len(prefix), initial_indent=prefix,
                         subsequent_indent=prefix + " " * hanging, break_on_hyphens=False) \
        or [prefix.rstrip()]


def gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def _plan_lines(plan: StackPlan, how: dict[str, str]) -> list[str]:
    lines = [f"Memory plan (the planner of `localroute plan`), budget {gib(plan.budget_bytes)} "
             f"({plan.budget_source}):"]
    for r in plan.roles:
        if r.memory is not None:
            m = r.memory
            lines.append(f"  {r.role}: {gib(m.total_bytes)} (weights {gib(m.weight_bytes)}, "
                         f"KV cache {gib(m.kv_bytes + m.state_bytes)}, overhead "
                         f"{gib(m.overhead_bytes)}; {how.get(r.role, '')})")
    if plan.fits:
        lines.append(f"  total {gib(plan.total_bytes)}: fits, headroom "
                     f"{gib(plan.headroom_bytes)}.")
    elif plan.errors:
        lines.append(f"  total of what could be sized {gib(plan.total_bytes)}, headroom "
                     f"{gib(plan.headroom_bytes)}; not sized: " + "; ".join(plan.errors))
    else:
        sets = " | ".join(", ".join(c) for c in plan.combinations) or "none"
        lines.append(f"  total {gib(plan.total_bytes)}: does NOT fit ({gib(-plan.headroom_bytes)}"
                     f" over). Instances that fit at once: {sets}. Load only those, or choose "
                     "smaller models (`localroute init --force`).")
    return lines


def _header(probes: list[Probe], plan: StackPlan, how: dict[str, str], when: str,
            notes: list[str]) -> list[str]:
    lines = comment(f"localroute models.yaml, written by `localroute init` on {when}.")
    lines += ["#", *comment("Servers probed:")]
    for p in probes:
        if p.server is not None:
            n = len(p.server.models)
            found = f"{p.server.flavour}, {n} model{'s' if n != 1 else ''}"
            lines += comment(f"  {p.url} ({p.source}): {found}", hanging=4)
        else:
            lines += comment(f"  {p.url} ({p.source}): {p.problem}", hanging=4)
    lines.append("#")
    for text in _plan_lines(plan, how):
        lines += comment(text, hanging=4)
    for note in notes:
        lines += comment(f"Note: {note}", hanging=2)
    lines += ["#", *comment(
        "Every key is documented in README.md (\"Configuration reference\"). localroute reads "
        "this file by default (unless --config or LOCALROUTE_CONFIG says otherwise); run "
        "`localroute doctor` to check it, and `localroute init --force` to write it again.")]
    return lines


def _size_line(c: Candidate) -> str:
    m = c.model
    parts = [f"{c.params / 1e9:.3g}B parameters" if c.params else "parameters not reported"]
    if m.quantization:
        parts.append(m.quantization)
    if m.size_bytes:
        parts.append(f"{m.size_bytes / 1e9:.1f} GB of weights")
    if m.max_context:
        parts.append(f"model context {m.max_context}")
    parts.append("loaded" if m.loaded else "not loaded" if m.loaded is False else "")
    return "size: " + ", ".join(p for p in parts if p)


def _role_block(role: str, s: RoleSettings, c: Candidate, plan: StackPlan) -> list[str]:
    lines = comment(f"{role}: {c.model.id} on {c.backend} ({c.server} at {c.endpoint})", 6,
                    hanging=2)
    for text in s.why:
        lines += comment("  " + text, 6, hanging=4)
    if "shares_instance_with" not in s.values:
        lines += comment("  " + _size_line(c), 6, hanging=4)
        memory = next((r.memory for r in plan.roles if r.role == role), None)
        if memory is not None:
            lines += comment(f"  memory: {gib(memory.total_bytes)} for this instance "
                             f"(headroom of the whole plan: {gib(plan.headroom_bytes)})", 6,
                             hanging=4)
    lines.append(f"      {role}:")
    lines += [f"        {key}: {scalar(value)}" for key, value in s.values.items()]
    return lines


def _embedded_profile() -> list[str]:
    raw = yaml.safe_load(PACKAGED_MODELS.read_text(encoding="utf-8"))
    profile = raw.get("profiles", {}).get("embedded") if isinstance(raw, dict) else None
    if not isinstance(profile, dict):
        return []
    body = yaml.safe_dump({"embedded": profile}, sort_keys=False, default_flow_style=False)
    lines = ["", *comment("The in-process demonstration model (SmolLM2-135M), kept so "
                          "`--profile embedded` works with this file too.", 2)]
    return lines + [f"  {line}" for line in body.splitlines()]


def render(proposal: Proposal, cands: dict[str, Candidate], settings: dict[str, RoleSettings],
           plan: StackPlan, how: dict[str, str], probes: list[Probe], when: str) -> str:
    servers = sorted({f"{c.backend} at {c.endpoint}" for c in
                      (cands[ch.key] for ch in proposal.roles.values())})
    lines = _header(probes, plan, how, when, proposal.notes)
    lines += ["version: 1", ""]
    lines += comment(f"Only '{PROFILE}' is chosen automatically: when its servers do not "
                     "answer, commands say so rather than fall back to the demonstration model.")
    lines += [f"auto_profiles: [{PROFILE}]", "", "profiles:", f"  {PROFILE}:"]
    lines.append(f"    description: {scalar('your servers: ' + ', '.join(servers))}")
    lines.append("    roles:")
    for role in ROLE_ORDER:
        lines += _role_block(role, settings[role], cands[settings[role].key], plan)
    lines += _embedded_profile()
    return "\n".join(lines) + "\n"
