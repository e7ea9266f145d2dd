"""The validation model's verdict on an answer, as strict JSON."""

from __future__ import annotations

from pydantic import BaseModel, Field

from localroute.client.llm_client import LLMClient

PROMPT = """You check answers before they reach a person. Given a request and an answer, decide
whether the answer addresses the request, is internally consistent, and makes no claim that the
provided facts contradict. Reply with JSON only: {"passed": bool, "failures": [short strings],
"confidence": 0..1}."""


class Verdict(BaseModel):
    passed: bool
    failures: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


async def judge(
    client: LLMClient, question: str, answer: str, facts: str = "", max_tokens: int = 200
) -> Verdict:
    body = f"Request:\n{question[:3000]}\n\nAnswer:\n{answer[:4000]}"
    if facts:
        body += f"\n\nFacts from tools:\n{facts[:2000]}"
    response = await client.respond(
        "validation",
        [{"role": "system", "content": PROMPT}, {"role": "user", "content": body}],
        response_format=Verdict,
        temperature=0.0,
        max_tokens=max_tokens,
    )
    assert isinstance(response.parsed, Verdict)
    return response.parsed
