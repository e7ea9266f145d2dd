"""Grade model-written Python against its tests, one sandboxed run per row.

A row is `{id, prompt, entry_point, tests, completion}` (HumanEval's tests end with
`check(<entry_point>)`, MBPP's are bare asserts). The program is the completion when it defines
the entry point, else the prompt followed by the completion (HumanEval completions are often just
the function body). It runs in the sandbox; the tests run beside it in a trusted checker and call
the entry point there (`sandbox.run_program` with a `CheckSpec`), so the program's answers are the
only thing it controls.
"""

from __future__ import annotations

import ast
import queue
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from localroute.evaluation.sandbox.program import (
    CheckSpec,
    SandboxConfig,
    SandboxResult,
    run_program,
)
from localroute.jsonl import read_objects

_STDERR_TAIL = 2000
_FIELDS = "id, prompt, entry_point, tests, completion"


class CodeRowError(ValueError):
    """A row of a code-grading file (or list) is malformed; the message names where."""


class CodeRow(BaseModel):
    """One problem with a model's completion. Extra fields (e.g. `source`) are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str
    prompt: str
    entry_point: str
    tests: str
    completion: str

    @field_validator("entry_point")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"entry_point {value!r} is not a Python identifier")
        return value


def defines(code: str, name: str) -> bool:
    """Whether `code` parses and binds `name` at module level (def, class, assignment, import)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(name in _bound_names(stmt) for stmt in _module_level(tree.body))


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import time, including those under if/try/with/for, not inside defs."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for attr in ("body", "orelse", "finalbody"):
            yield from _module_level(getattr(stmt, attr, []))
        for handler in getattr(stmt, "handlers", []):
            yield from _module_level(handler.body)


def _bound_names(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in stmt.names}
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        targets = [stmt.target]
    return {
        node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)
    }


def build_program(prompt: str, completion: str, entry_point: str) -> str:
    """The program to run: the completion, or the prompt + the completion when the completion
    does not define the entry point itself. The tests are not part of it."""
    code = completion if defines(completion, entry_point) else prompt + completion
    return f"{code.rstrip()}\n"


def check_spec(row: CodeRow) -> CheckSpec:
    """The trusted side of a row: its tests, calling its entry point, after its prompt's helpers."""
    return CheckSpec(tests=row.tests, entry_point=row.entry_point, setup=row.prompt)


def grade_code_rows(
    rows: Iterable[Mapping[str, Any] | CodeRow],
    config: SandboxConfig | None = None,
    concurrency: int = 2,
) -> list[dict[str, Any]]:
    """Run every row in the sandbox; one result dict per row, in order, with its id and verdict."""
    cfg = config or SandboxConfig()
    checked = [_validate(row, f"row {index}") for index, row in enumerate(rows)]
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if cfg.run_as_uid - (concurrency - 1) < 1:
        raise ValueError(f"run_as_uid={cfg.run_as_uid} leaves no room for {concurrency} slots")
    # Each concurrent slot runs as its own uid, so one program's fork bomb cannot use up the
    # RLIMIT_NPROC (counted per uid) of a program running beside it.
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(concurrency):
        slots.put(cfg.run_as_uid - slot)

    def grade(row: CodeRow) -> dict[str, Any]:
        uid = slots.get()
        try:
            program = build_program(row.prompt, row.completion, row.entry_point)
            result = run_program(
                program, cfg.model_copy(update={"run_as_uid": uid}), check_spec(row)
            )
        finally:
            slots.put(uid)
        return _result_row(row, result)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(grade, checked))


def load_code_rows(path: str | Path) -> list[CodeRow]:
    """Read a JSON Lines file of rows; a malformed row raises CodeRowError naming file:line."""
    rows = [_validate(data, where) for where, data in read_objects(path, CodeRowError, _FIELDS)]
    if not rows:
        raise CodeRowError(f"{path}: no rows; each line must be a JSON object with {_FIELDS}")
    return rows


def grade_code_file(
    path: str | Path, config: SandboxConfig | None = None, concurrency: int = 2
) -> list[dict[str, Any]]:
    """Grade every row of a JSON Lines file (see `load_code_rows`)."""
    return grade_code_rows(load_code_rows(path), config, concurrency)


def summarize(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Count of results per verdict."""
    return dict(Counter(str(result["verdict"]) for result in results))


def _validate(row: Mapping[str, Any] | CodeRow, where: str) -> CodeRow:
    if isinstance(row, CodeRow):
        return row
    if not isinstance(row, Mapping):
        raise CodeRowError(
            f"{where}: expected a JSON object with {_FIELDS}, got {type(row).__name__}"
        )
    try:
        return CodeRow.model_validate(row)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}" for err in exc.errors()
        )
        raise CodeRowError(f"{where}: {problems} (each row needs {_FIELDS})") from exc


def _result_row(row: CodeRow, result: SandboxResult) -> dict[str, Any]:
    return {
        "id": row.id,
        "verdict": result.verdict.value,
        "reason": result.reason,
        "error_type": result.error_type,
        "elapsed_s": result.elapsed_s,
        "stdout_truncated": result.stdout_truncated,
        "stderr_tail": result.stderr[-_STDERR_TAIL:],
        "cleanup_ok": result.cleanup_ok,
        "missing_protections": result.missing_protections,
    }
