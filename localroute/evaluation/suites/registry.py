"""The math and code suites, and the registry of every suite by name."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from localroute.config.schema import ResolvedRole
from localroute.evaluation.sandbox.models import SandboxConfig
from localroute.evaluation.suites.base import (
    BenchItem,
    Grade,
    Sampling,
    Suite,
    SuiteError,
    is_reasoning_role,
    read_jsonl,
)

R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = (
    "Write the Python code for the task below. Reply with the complete code (imports and the "
    "whole function) in one ```python code block, without tests or example usage."
)
CODE_GRADER_VERSION = "localroute-code-grader/1.0"
_SANDBOX_LOCK = threading.Lock()
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


class MathSuite(Suite):
    """MATH-500 subset; the DeepSeek-R1 evaluation protocol for reasoning roles."""

    name = "math"
    default_file = "math500_subset.jsonl"
    template_version = "math/1"

    def load(self, path: Path) -> list[BenchItem]:
        rows = read_jsonl(path, ("id", "problem", "answer"))
        return [
            BenchItem(
                id=str(r["id"]),
                subject=str(r.get("subject", "all")),
                level=int(r["level"]) if r.get("level") is not None else None,
                reference=str(r["answer"]),
                data=r,
            )
            for r in rows
        ]

    def sampling(
        self,
        role: ResolvedRole,
        protocol: str = "auto",
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> Sampling:
        if protocol not in ("auto", "deepseek-r1", "role"):
            raise SuiteError(f"--protocol: unknown '{protocol}'; use auto, deepseek-r1 or role")
        if protocol == "deepseek-r1" or (protocol == "auto" and is_reasoning_role(role)):
            # DeepSeek-R1 model card: temperature 0.6, top-p 0.95, no system prompt, the
            # instruction in the user turn; the answer may use the whole context (the client
            # caps max_tokens at what is left after the prompt).
            return Sampling(
                protocol="deepseek-r1",
                temperature=0.6 if temperature is None else temperature,
                top_p=0.95 if top_p is None else top_p,
                max_tokens=role.context_length if max_tokens is None else max_tokens,
            )
        return super().sampling(role, "role", temperature, top_p, max_tokens)

    def messages(self, item: BenchItem, sampling: Sampling) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"{item.data['problem']}\n{R1_INSTRUCTION}"}]

    def grade(self, item: BenchItem, output: str) -> Grade:
        return self.grade_many([(item, output)])[0]

    def grade_many(self, pairs: list[tuple[BenchItem, str]]) -> list[Grade]:
        from localroute.evaluation.math_grader import grade_many

        grades = grade_many([(item.reference or "", output) for item, output in pairs])
        return [
            Grade(
                correct=g.equivalent,
                verdict=g.verdict,
                score=1.0 if g.equivalent else 0.0,
                extracted=g.extracted,
                trace={
                    "reason": g.reason,
                    "extraction_method": g.extraction_method,
                    "normalized_gold": g.normalized_gold,
                    "normalized_pred": g.normalized_pred,
                    "elapsed_ms": g.elapsed_ms,
                },
            )
            for g in grades
        ]

    def grader_version(self) -> str:
        from localroute.evaluation.math_grader import GRADER_VERSION

        return str(GRADER_VERSION)


def extract_code(text: str, entry_point: str) -> str:
    """The code in a completion: fenced blocks are unwrapped (the one defining the entry point
    wins, else all Python blocks joined); an unclosed fence from a truncated answer still counts.
    """
    from localroute.evaluation.graders.code import defines

    # The client has split reasoning off already; a stray closing tag is all that can remain.
    # (split_reasoning would also strip the indentation of a body-only completion.)
    content = text.rsplit("</think>", 1)[-1] if "</think>" in text else text
    blocks = [
        (lang.lower(), body)
        for lang, body in _FENCE.findall(content)
        if lang.lower() in ("", "python", "py", "python3")
    ]
    if not blocks:
        return content.strip("\n")
    for _, body in blocks:
        if defines(body, entry_point):
            return str(body).strip("\n")
    return "\n\n".join(str(body).strip("\n") for _, body in blocks)


class CodeSuite(Suite):
    """HumanEval + MBPP subset; completions run against the tests in the sandbox."""

    name = "code"
    default_file = "code_subset.jsonl"
    template_version = "code/1"

    def __init__(self, sandbox: SandboxConfig | None = None) -> None:
        self.sandbox = sandbox or SandboxConfig()

    def load(self, path: Path) -> list[BenchItem]:
        rows = read_jsonl(path, ("id", "prompt", "entry_point", "tests"))
        return [
            BenchItem(
                id=str(r["id"]),
                subject=str(r["id"]).split("/")[0],
                reference=str(r["tests"]),
                data=r,
            )
            for r in rows
        ]

    def messages(self, item: BenchItem, sampling: Sampling) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"{CODE_INSTRUCTION}\n\n{item.data['prompt']}"}]

    def grade(self, item: BenchItem, output: str) -> Grade:
        return self.grade_many([(item, output)])[0]

    def grade_many(self, pairs: list[tuple[BenchItem, str]]) -> list[Grade]:
        from localroute.evaluation.graders.code import grade_code_rows

        codes = [extract_code(output, str(item.data["entry_point"])) for item, output in pairs]
        rows = [
            {
                "id": item.id,
                "prompt": str(item.data["prompt"]),
                "entry_point": str(item.data["entry_point"]),
                "tests": str(item.data["tests"]),
                "completion": code,
            }
            for (item, _), code in zip(pairs, codes, strict=True)
        ]
        # One sandboxed program at a time, even when the runner grades from several threads:
        # concurrent programs under one uid would share its RLIMIT_NPROC.
        with _SANDBOX_LOCK:
            results = grade_code_rows(rows, self.sandbox, concurrency=1) if rows else []
        grades = []
        for code, result in zip(codes, results, strict=True):
            verdict = str(result["verdict"])
            grades.append(
                Grade(
                    correct=None if verdict == "sandbox_error" else verdict == "passed",
                    verdict=verdict,
                    score=1.0 if verdict == "passed" else 0.0,
                    extracted=code,
                    trace={k: v for k, v in result.items() if k not in ("id", "verdict")},
                )
            )
        return grades

    def grader_version(self) -> str:
        return CODE_GRADER_VERSION

    def manifest_extra(self) -> dict[str, Any]:
        from localroute.evaluation.sandbox.caps import capabilities

        return {"sandbox": capabilities(self.sandbox).model_dump()}


def get_suite(name: str, allow_weak_sandbox: bool = False) -> Suite:
    """The suite of that name; `allow_weak_sandbox` lets the code suite grade where the sandbox
    cannot set up all of its isolation (see SandboxConfig.allow_weak)."""
    from localroute.evaluation.suites.system import SystemSuite

    if name == "code":
        return CodeSuite(SandboxConfig(allow_weak=allow_weak_sandbox))
    suites: dict[str, type[Suite]] = {"math": MathSuite, "system": SystemSuite}
    try:
        return suites[name]()
    except KeyError:
        raise SuiteError(f"unknown suite '{name}'; use one of {', '.join(SUITE_NAMES)}") from None


SUITE_NAMES = ("math", "code", "system")
