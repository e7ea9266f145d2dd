"""Blind A/B tests: both sides answer the same queries, a judge role compares them in both orders.

The judge sees neither model names nor reasoning blocks, runs at temperature 0, and is asked
twice (A first, then B first); when the two orders disagree the query is a tie. Where the suite
has references (math answers, code tests, system rubrics) the judge gets them, and the objective
grades of both answers are logged beside its verdicts. Verdicts are from B's side: a "win" means
B's answer was judged better.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from localroute.client.llm_client import LLMClient
from localroute.client.parsing import split_reasoning
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.evaluation.stats import ABStats, Outcome, ab_stats
from localroute.evaluation.suites.base import BenchItem, Grade, Sampling, Suite, SuiteError
from localroute.evaluation.suites.registry import get_suite
from localroute.evaluation.suites.runner import bench_role, git_commit
from localroute.evaluation.suites.store import now_iso
from localroute.types import LLMError

Side = Literal["a", "b", "tie", "invalid"]
JUDGE_TEMPLATE_VERSION = "judge/1"
JUDGE_SYSTEM = (
    "You are an impartial judge. Compare two answers to the same question and decide which one "
    "is better: correct first, then complete, clear and concise. Ignore the order in which the "
    "answers are shown and their length as such. If they are equally good or equally bad, say tie."
)


class JudgeVerdict(BaseModel):
    better: Literal["1", "2", "tie"]
    reason: str = Field(default="", max_length=200)


class AbOptions(BaseModel):
    a: str
    b: str
    suite: str | None = None
    queries: Path | None = None
    judge: str = "validation"
    base_role: str | None = None
    limit: int | None = None
    concurrency: int = 1
    max_tokens: int | None = None  # cap for both sides (else the suite's protocol decides)
    out: Path = Path("runs/ab")


class AnswerRecord(BaseModel):
    output: str = ""
    latency_s: float | None = None
    completion_tokens: int = 0
    error: str | None = None
    grade: Grade | None = None


class JudgeRecord(BaseModel):
    order: Literal["ab", "ba"]
    preferred: Side  # which side the judge preferred in this order
    reason: str = ""


class AbRow(BaseModel):
    id: str
    subject: str
    messages: list[dict[str, Any]]
    reference: str | None
    a: AnswerRecord
    b: AnswerRecord
    judge: list[JudgeRecord]
    outcome: Outcome  # from B's side
    consistent: bool | None  # both orders agreed (None: the judge was not needed)


class AbResult(BaseModel):
    out: str
    a: dict[str, Any]
    b: dict[str, Any]
    judge: dict[str, Any]
    suite: str | None
    stats: ABStats
    objective: dict[str, Any]
    figures: dict[str, Any]
    created_at: str
    git_commit: str
    rows: list[AbRow]


def resolve_side(profile: ResolvedProfile, spec: str, name: str, base: str | None) -> ResolvedRole:
    """A role of the profile, or a model id served like `base` (same backend and endpoint)."""
    if spec in profile.roles:
        return profile.roles[spec].model_copy(update={"name": name, "fallback": ()})
    if base is None:
        raise SuiteError(
            f"'{spec}' is not a role of profile '{profile.name}' (roles: "
            f"{', '.join(sorted(profile.roles))}); to test it as a model id, pass --base-role "
            "ROLE to say which role's server and settings serve it"
        )
    owner = profile.roles[profile.role(base).instance]
    return profile.role(base).model_copy(update={
        "name": name, "id": spec, "instance": name, "fallback": (),
        "instance_context_length": owner.context_length,
    })


def load_queries(path: Path, limit: int | None) -> list[BenchItem]:
    from localroute.evaluation.suites.base import read_jsonl

    rows = read_jsonl(path, ("query",))
    items = [BenchItem(id=str(r.get("id", f"q{i + 1}")), subject=str(r.get("subject", "all")),
                       reference=r.get("reference"), data=r) for i, r in enumerate(rows)]
    return items[:limit] if limit else items


def blind(text: str, names: list[str]) -> str:
    """The answer as the judge sees it: no reasoning block, no model or role names."""
    _, answer = split_reasoning(text)
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        answer = re.sub(re.escape(name), "[model]", answer, flags=re.IGNORECASE)
    return answer.strip()


def judge_messages(question: str, first: str, second: str, reference: str | None) -> list[
        dict[str, Any]]:
    ref = f"\n\nReference (the known correct answer or the checks it must pass):\n{reference}" \
        if reference else ""
    user = (f"Question:\n{question}{ref}\n\n[Answer 1]\n{first}\n[End of answer 1]\n\n"
            f"[Answer 2]\n{second}\n[End of answer 2]\n\nWhich answer is better? Reply with a "
            'JSON object: {"better": "1" | "2" | "tie", "reason": "<one sentence>"}.')
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def reconcile(first: Side, second: Side) -> tuple[Outcome, bool | None]:
    """Final outcome from B's side, and whether the two orders agreed."""
    if "invalid" in (first, second):
        return "tie", None
    if first != second:
        return "tie", False
    return {"b": "win", "a": "loss", "tie": "tie"}[first], True  # type: ignore[return-value]


async def _answer(client: LLMClient, role: ResolvedRole, suite: Suite | None, item: BenchItem,
                  messages: list[dict[str, Any]], sampling: Sampling) -> AnswerRecord:
    started = time.perf_counter()
    try:
        r = await client.respond(role.name, messages, temperature=sampling.temperature)
    except LLMError as exc:
        return AnswerRecord(error=f"{type(exc).__name__}: {exc}",
                            latency_s=time.perf_counter() - started)
    grade = await asyncio.to_thread(suite.grade, item, r.content) if suite else None
    return AnswerRecord(output=r.content, latency_s=r.timings.total_s,
                        completion_tokens=r.usage.completion_tokens, grade=grade)


async def _judge(client: LLMClient, judge: str, order: Literal["ab", "ba"], question: str,
                 first: str, second: str, reference: str | None, max_tokens: int) -> JudgeRecord:
    try:
        r = await client.respond(judge, judge_messages(question, first, second, reference),
                                 response_format=JudgeVerdict, temperature=0.0,
                                 max_tokens=max_tokens)
    except LLMError as exc:
        return JudgeRecord(order=order, preferred="invalid", reason=f"{type(exc).__name__}: {exc}")
    verdict: JudgeVerdict = r.parsed
    slot_to_side = {"1": order[0], "2": order[1], "tie": "tie"}
    return JudgeRecord(order=order, preferred=slot_to_side[verdict.better],  # type: ignore[arg-type]
                       reason=verdict.reason)


def _question(messages: list[dict[str, Any]]) -> str:
    return "\n\n".join(str(m.get("content") or "") for m in messages)


async def run_ab(profile: ResolvedProfile, options: AbOptions) -> AbResult:
    if (options.suite is None) == (options.queries is None):
        raise SuiteError("give exactly one of --suite NAME or --queries FILE")
    suite = get_suite(options.suite) if options.suite else None
    base = options.base_role or next(
        (s for s in (options.a, options.b) if s in profile.roles), None)
    side_a = resolve_side(profile, options.a, "ab_a", base)
    side_b = resolve_side(profile, options.b, "ab_b", base)
    judge = profile.role(options.judge)
    if suite is not None:
        items = suite.load(suite.default_path())[: options.limit or None]
    else:
        assert options.queries is not None
        items = load_queries(options.queries, options.limit)
    samplings = {}
    roles = dict(profile.roles)
    for side, spec in ((side_a, options.a), (side_b, options.b)):
        # Sampling by the original role's name: "reasoning*" roles get the R1 protocol.
        original = side.model_copy(update={"name": spec if spec in profile.roles else base})
        sampling = (suite or _Plain()).sampling(original, max_tokens=options.max_tokens)
        samplings[side.name] = sampling
        roles[side.name] = bench_role(side, sampling)
    client = LLMClient(profile.model_copy(update={"roles": roles}))
    names = [side_a.id, side_b.id, options.a, options.b, side_a.id.split("/")[-1],
             side_b.id.split("/")[-1]]
    gate = asyncio.Semaphore(options.concurrency)
    judge_tokens = judge.max_tokens

    async def one(item: BenchItem) -> AbRow:
        async with gate:
            messages = (suite.messages(item, samplings["ab_a"]) if suite
                        else [{"role": "user", "content": str(item.data["query"])}])
            a = await _answer(client, roles["ab_a"], suite, item, messages, samplings["ab_a"])
            b = await _answer(client, roles["ab_b"], suite, item, messages, samplings["ab_b"])
            verdicts: list[JudgeRecord] = []
            consistent: bool | None = None
            if a.error or b.error:
                outcome: Outcome = "tie" if a.error and b.error else ("loss" if b.error else "win")
            else:
                question, reference = _question(messages), item.reference
                ta, tb = blind(a.output, names), blind(b.output, names)
                verdicts = [
                    await _judge(client, judge.name, "ab", question, ta, tb, reference,
                                 judge_tokens),
                    await _judge(client, judge.name, "ba", question, tb, ta, reference,
                                 judge_tokens),
                ]
                outcome, consistent = reconcile(verdicts[0].preferred, verdicts[1].preferred)
            return AbRow(id=item.id, subject=item.subject, messages=messages,
                         reference=item.reference, a=a, b=b, judge=verdicts, outcome=outcome,
                         consistent=consistent)

    try:
        rows = list(await asyncio.gather(*(one(item) for item in items)))
    finally:
        await client.aclose()
    from localroute.evaluation.ab_report import figures, objective

    return AbResult(
        out=str(options.out),
        a={"spec": options.a, "model": side_a.id, "role": base if options.a not in profile.roles
           else options.a, "backend": side_a.backend.value, "quantization": side_a.quantization,
           "sampling": samplings["ab_a"].model_dump()},
        b={"spec": options.b, "model": side_b.id, "role": base if options.b not in profile.roles
           else options.b, "backend": side_b.backend.value, "quantization": side_b.quantization,
           "sampling": samplings["ab_b"].model_dump()},
        judge={"role": judge.name, "model": judge.id, "temperature": 0.0,
               "template": JUDGE_TEMPLATE_VERSION},
        suite=suite.name if suite else None,
        stats=ab_stats([r.outcome for r in rows],
                       [r.consistent for r in rows if r.consistent is not None]),
        objective=objective(rows), figures=figures(rows), created_at=now_iso(),
        git_commit=git_commit(), rows=rows,
    )


class _Plain(Suite):
    """Stands in for a suite when queries come from a file: the role's own sampling."""

    name = "queries"
    default_file = ""
    template_version = "queries/1"

    def load(self, path: Path) -> list[BenchItem]:
        return load_queries(path, None)

    def messages(self, item: BenchItem, sampling: Sampling) -> list[dict[str, Any]]:
        return [{"role": "user", "content": str(item.data["query"])}]

    def grade(self, item: BenchItem, output: str) -> Grade:
        raise NotImplementedError("queries from a file have no grader")

    def grader_version(self) -> str:
        return "none"
