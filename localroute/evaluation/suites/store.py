"""A run directory: the append-only sample log (`samples.jsonl`), the manifest, and regrades.

Rows are keyed by (suite, item, sample, model, config hash). The log is only ever appended to;
a line cut short by a kill is dropped (it is an incomplete record) before the next append, and
a key logged twice (only `--retry-errors` does that) counts once: its last row wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from localroute.evaluation.suites.base import Grade

SAMPLES = "samples.jsonl"
REGRADED = "regraded.jsonl"
MANIFEST = "manifest.json"


class RunStoreError(ValueError):
    """A run directory is missing, damaged or holds a different run; the message says which."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sample_key(suite: str, item: str, sample: int, model: str, config_hash: str) -> str:
    return f"{suite}|{item}|{sample}|{model}|{config_hash}"


def config_hash(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class SampleError(BaseModel):
    kind: str  # the exception class: LLMTimeout, LLMConnectionError, ...
    message: str


class SampleRow(BaseModel):
    """Everything about one sample: what was asked, what came back, and how it was graded."""

    key: str
    suite: str
    item_id: str
    sample: int
    model: str
    config_hash: str
    role: str
    subject: str = "all"
    level: int | None = None
    messages: list[dict[str, Any]]
    output: str = ""
    reasoning: str | None = None
    finish_reason: str | None = None
    grade: Grade | None = None  # None when the model call failed
    error: SampleError | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float | None = None
    queue_wait_s: float | None = None
    attempts: int = 0
    grader_version: str = ""
    created_at: str = Field(default_factory=now_iso)

    @property
    def correct(self) -> bool:
        return bool(self.grade is not None and self.grade.correct)


class Session(BaseModel):
    started_at: str
    finished_at: str | None = None
    rows_written: int = 0
    status: str = "running"  # running | completed | interrupted | failed


class RunManifest(BaseModel):
    """What a run measured and with what: enough to reproduce it or to refuse a mixed resume."""

    run_id: str
    created_at: str
    suite: str
    role: str
    model: str
    backend: str
    endpoint: str | None
    quantization: str
    profile: str
    config_file: str
    sampling: dict[str, Any]
    samples_per_item: int
    limit: int | None
    items: list[str]
    dataset: dict[str, Any]
    grader_version: str
    config_hash: str
    git_commit: str
    localroute_version: str
    python: str = Field(default_factory=lambda: sys.version.split()[0])
    suite_extra: dict[str, Any] = Field(default_factory=dict)
    sessions: list[Session] = Field(default_factory=list)
    regrades: list[dict[str, Any]] = Field(default_factory=list)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.samples_path = self.root / SAMPLES
        self.manifest_path = self.root / MANIFEST
        self.regraded_path = self.root / REGRADED

    def exists(self) -> bool:
        return self.manifest_path.is_file() or self.samples_path.is_file()

    # ---- manifest ---------------------------------------------------------------------

    def read_manifest(self) -> RunManifest:
        try:
            return RunManifest.model_validate_json(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunStoreError(
                f"{self.root}: no {MANIFEST}; this is not a bench run directory "
                "(run `localroute bench SUITE --out DIR` first)"
            ) from None
        except ValidationError as exc:
            raise RunStoreError(f"{self.manifest_path}: damaged manifest: {exc}") from None

    def write_manifest(self, manifest: RunManifest) -> None:
        # Write-then-rename, so a kill never leaves half a manifest.
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    # ---- samples ----------------------------------------------------------------------

    def read_rows(self, path: Path | None = None) -> list[SampleRow]:
        """Every complete row of the log, in order (a torn last line is skipped)."""
        source = path or self.samples_path
        if not source.is_file():
            return []
        rows = []
        lines = source.read_text(encoding="utf-8").split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(SampleRow.model_validate_json(line))
            except ValidationError as exc:
                if number == len(lines):  # no newline after it: torn by a kill mid-write
                    continue
                raise RunStoreError(f"{source}:{number}: damaged row: {exc}") from None
        return rows

    def latest(self) -> dict[str, SampleRow]:
        """The log as one row per key (the last row written for it)."""
        return {row.key: row for row in self.read_rows()}

    def repair_tail(self) -> None:
        """Drop an unterminated last line so the next append starts on a line of its own."""
        if not self.samples_path.is_file():
            return
        data = self.samples_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.samples_path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def append(self, row: SampleRow) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        line = row.model_dump_json() + "\n"
        with self.samples_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def write_regraded(self, rows: list[SampleRow]) -> None:
        tmp = self.regraded_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, self.regraded_path)


class Run(BaseModel):
    """A run as reports read it: its manifest and one row per key, with the latest grades."""

    root: str
    manifest: RunManifest
    rows: list[SampleRow]
    regraded: bool = False


def load_run(root: Path | str) -> Run:
    store = RunStore(Path(root))
    if not store.root.is_dir():
        raise RunStoreError(f"{root}: no such run directory")
    manifest = store.read_manifest()
    rows = store.latest()
    regraded = False
    if store.regraded_path.is_file():
        for row in store.read_rows(store.regraded_path):
            current = rows.get(row.key)
            # A regrade applies only to the very output it graded.
            if current is not None and current.output == row.output:
                rows[row.key] = current.model_copy(
                    update={"grade": row.grade, "grader_version": row.grader_version}
                )
                regraded = True
    return Run(root=str(store.root), manifest=manifest, rows=list(rows.values()),
               regraded=regraded)
