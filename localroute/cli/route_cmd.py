"""`localroute route` (stages 1 and 2 only) and `localroute graph` (the state machine)."""

from __future__ import annotations

import typer

from localroute.cli.ask_cmd import ChannelOpt, ModeOpt, parse_mode
from localroute.cli.common import JsonOpt, ProfileOpt, active_profile, out, print_json, run_async
from localroute.client.llm_client import LLMClient
from localroute.client.messages import estimate_tokens
from localroute.config.modes import load_modes
from localroute.orchestrator.machine import mermaid
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.routing.complexity import apply_mode, assess, select_role


def route(
    query: str = typer.Argument(..., help="The request to route."),
    mode: str | None = ModeOpt,
    channel: str | None = ChannelOpt,
    profile: str | None = ProfileOpt,
    no_model: bool = typer.Option(False, "--no-model", help="Forbid the router-model escalation."),
    as_json: bool = JsonOpt,
) -> None:
    """Show how a request would be routed (stages 1 and 2), without answering it."""
    chosen = parse_mode(mode)

    async def go() -> dict[str, object]:
        modes = load_modes()
        active = await active_profile(profile)
        client = None if no_model else LLMClient(active)
        router = Stage1Router(RouteClassifier.load(), modes.routing, client)
        try:
            decision = await router.decide(query, channel, allow_model=not no_model)
        finally:
            if client is not None:
                await client.aclose()
        result: dict[str, object] = {"decision": decision.model_dump()}
        if decision.route != "tool":
            policy = modes.policy(chosen or modes.default_mode)
            complexity = assess(query, decision, estimate_tokens([{"content": query}]))
            wanted = select_role(decision, complexity,
                                 depth_threshold=modes.routing.reasoning_depth_threshold,
                                 large_context_tokens=modes.routing.large_context_tokens)
            selection = apply_mode(wanted, policy.allowed_roles, set(active.roles))
            result |= {"complexity": complexity.model_dump(),
                       "selection": selection.model_dump() if selection else None}
        return result

    result = run_async(go())
    if as_json:
        print_json(result)
        return
    decision = result["decision"]
    assert isinstance(decision, dict)
    out.print(f"route: [bold]{decision['route']}[/bold] by {decision['decided_by']} "
              f"(confidence {decision['confidence']:.2f}, {decision['latency_ms']:.2f} ms)")
    out.print(f"  reason: {decision['reason']}", highlight=False)
    if decision.get("tool_call"):
        out.print(f"  tool: {decision['tool_call']}", highlight=False)
    if result.get("selection"):
        out.print(f"role: [bold]{result['selection']['role']}[/bold] "  # type: ignore[index]
                  f"({result['selection']['reason']})", highlight=False)  # type: ignore[index]
        out.print(f"  complexity: {result['complexity']}", highlight=False)


def graph() -> None:
    """Print the orchestrator's state machine as a Mermaid diagram."""
    print(mermaid())
