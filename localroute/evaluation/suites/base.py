"""What every benchmark suite shares: items, grades, sampling settings and dataset files."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from localroute.config.schema import ResolvedRole

DATA_ENV = "LOCALROUTE_DATA_DIR"
# The suites' problems ship with the package (sources and licences in data/SOURCES.md).
DEFAULT_DATA_DIR = Path(__file__).parent / "data"


class SuiteError(ValueError):
    """A suite's data file or options are unusable; the message names the file and the fix."""


class BenchItem(BaseModel):
    """One problem of a suite, as loaded from its data file."""

    model_config = ConfigDict(frozen=True)

    id: str
    subject: str = "all"
    level: int | None = None
    reference: str | None = None  # what a judge may see: the gold answer, the tests, the rubric
    data: dict[str, Any] = Field(default_factory=dict)


class Grade(BaseModel):
    """A grader's verdict on one sample. `correct` is None when the grader could not decide."""

    correct: bool | None
    verdict: str
    score: float = 0.0  # 0..1; partial credit where the suite has it (system rubric)
    extracted: str | None = None
    trace: dict[str, Any] = Field(default_factory=dict)


class Sampling(BaseModel):
    """How a suite asks a role: the protocol name and the generation settings used."""

    model_config = ConfigDict(frozen=True)

    protocol: str
    temperature: float
    top_p: float
    max_tokens: int


def is_reasoning_role(role: ResolvedRole) -> bool:
    return role.reasoning or role.name.startswith("reasoning")


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file; a missing file or a bad row is a SuiteError naming file:line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SuiteError(
            f"{path}: data file not found; pass --data PATH or set {DATA_ENV} to the directory "
            "holding it (default: the data packaged with localroute)"
        ) from None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise SuiteError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise SuiteError(f"{path}: no rows")
    return rows


class Suite(ABC):
    """A benchmark: its items, how to ask for one, and how to grade an answer."""

    name: str
    default_file: str
    template_version: str  # bump when `messages` changes: it is part of the config hash

    @abstractmethod
    def load(self, path: Path) -> list[BenchItem]: ...

    @abstractmethod
    def messages(self, item: BenchItem, sampling: Sampling) -> list[dict[str, Any]]: ...

    @abstractmethod
    def grade(self, item: BenchItem, output: str) -> Grade: ...

    @abstractmethod
    def grader_version(self) -> str: ...

    def grade_many(self, pairs: list[tuple[BenchItem, str]]) -> list[Grade]:
        return [self.grade(item, output) for item, output in pairs]

    def sampling(
        self,
        role: ResolvedRole,
        protocol: str = "auto",
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> Sampling:
        """The role's own settings, with any explicit override."""
        return Sampling(
            protocol="role" if protocol == "auto" else protocol,
            temperature=role.temperature if temperature is None else temperature,
            top_p=role.top_p if top_p is None else top_p,
            max_tokens=role.max_tokens if max_tokens is None else max_tokens,
        )

    def manifest_extra(self) -> dict[str, Any]:
        """Suite-specific facts for the run manifest (e.g. the sandbox's protections)."""
        return {}

    def default_path(self) -> Path:
        return data_dir() / self.default_file
