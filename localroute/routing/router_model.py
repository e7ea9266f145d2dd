"""Asking the router model to route a query, with a strict JSON schema and a short timeout."""

from __future__ import annotations

from pydantic import BaseModel, Field

from localroute.client.llm_client import LLMClient
from localroute.routing.types import Route, ToolHint

ROUTER_ROLE = "router"
# The router model reads at most this much of the query: the instruction is at its head.
QUERY_CHARS = 4000

PROMPT = """You route requests for a local assistant. Pick exactly one route:
- tool: answered by running a local tool with no model (CPU, memory, disk, battery, uptime,
  processes, network, list a directory, read a file, current time, loaded models, telemetry).
- router: light tasks: chit-chat, simple facts, definitions, short rewrites, brainstorming,
  creative writing, short emails, classification or extraction from a short text.
- reasoning: multi-step reasoning: math word problems, proofs, logic puzzles, trade-offs,
  planning, diagnosing why from evidence.
- coding: write, debug, explain, review or test code; tracebacks; shell, SQL, regex.
- summarization: condense a long pasted text, log, transcript or conversation.
Also rate the reasoning depth needed from 0 (none) to 10 (hard proof), and your confidence.
Answer with JSON only."""


class RouterVerdict(BaseModel):
    route: Route
    tool: ToolHint | None = None
    reasoning_depth: int = Field(ge=0, le=10)
    confidence: float = Field(ge=0.0, le=1.0)


async def ask_router_model(
    client: LLMClient, query: str, *, timeout: float, max_tokens: int
) -> RouterVerdict:
    """Raises the client's typed errors (timeout, bad JSON...) for the caller to record."""
    response = await client.respond(
        ROUTER_ROLE,
        [{"role": "system", "content": PROMPT}, {"role": "user", "content": query[:QUERY_CHARS]}],
        response_format=RouterVerdict,
        temperature=0.0,
        timeout=timeout,
        max_tokens=max_tokens,
    )
    verdict = response.parsed
    assert isinstance(verdict, RouterVerdict)  # the client validated it against the schema
    return verdict
