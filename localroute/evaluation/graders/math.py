"""Math answer grader: is a model's final answer equivalent to the gold answer?

Pipeline per row: extract the answer from the prediction (``math_extract``), normalise both
sides (``math_normalize``), settle multiple-choice letters, prose answers and identical strings
here, and send everything else to math-verify (sympy) in a worker process that is killed when
it runs past the timeout. In the worker, equations are also compared as solution sets and
inequalities in one variable as sets of reals (``math_relations``). Every row gets a recorded
verdict; nothing is silently scored 0:

- ``equivalent`` / ``not_equivalent``: a definite answer (``equivalent`` True / False);
- ``no_answer``: the prediction holds no final answer (``equivalent`` False: the model failed);
- ``timeout`` / ``error``: the grader could not decide (``equivalent`` None, reason says why).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from localroute.evaluation.graders.math_extract import ExtractionMethod, extract_answer
from localroute.evaluation.graders.math_normalize import (
    as_choice,
    as_text_answer,
    drop_article,
    normalize,
    unwrap_command,
)
from localroute.evaluation.graders.math_worker import compare, warm_up
from localroute.jsonl import read_objects

__all__ = [
    "GRADER_VERSION",
    "Grade",
    "MathGrader",
    "MathGraderInputError",
    "Verdict",
    "grade",
    "grade_file",
    "grade_many",
]


def _math_verify_version() -> str:
    try:
        return version("math-verify")
    except PackageNotFoundError:  # pragma: no cover - it is a declared dependency
        return "unknown"


# 1.1: equations as solution sets, inequalities against intervals, leading articles dropped.
GRADER_VERSION: Final = f"localroute-math-grader/1.1 math-verify/{_math_verify_version()}"

Verdict = Literal["equivalent", "not_equivalent", "no_answer", "timeout", "error"]
_Outcome = tuple[Verdict, bool | None, str]
# (gold, prediction, gold with its label kept, prediction with its label kept)
_Pair = tuple[str, str, str | None, str | None]

_WARM_UP_TIMEOUT_S: Final = 120.0


class MathGraderInputError(ValueError):
    """A grading input (file row, timeout, worker count) is unusable; the message says why."""


class Grade(BaseModel):
    """The verdict on one (gold, prediction) pair."""

    model_config = ConfigDict(frozen=True)

    equivalent: bool | None
    verdict: Verdict
    reason: str
    extracted: str | None
    extraction_method: ExtractionMethod
    normalized_gold: str
    normalized_pred: str | None
    elapsed_ms: float


@dataclass
class _Prepared:
    prep_ms: float
    extracted: str | None
    method: ExtractionMethod
    gold: str
    pred: str | None
    decided: _Outcome | None
    # The answers with a leading label ("y =") kept, for the equation rule; None if no label.
    gold_full: str | None = None
    pred_full: str | None = None


def _prepare(gold: str, prediction: str) -> _Prepared:
    """Everything short of sympy: extraction, normalisation and the string-level decisions."""
    started = time.perf_counter()
    prep = _decide(gold, prediction)
    prep.prep_ms = (time.perf_counter() - started) * 1000.0
    return prep


def _decide(gold: str, prediction: str) -> _Prepared:
    extraction = extract_answer(prediction)
    gold_norm = normalize(gold)
    prep = _Prepared(0.0, extraction.answer, extraction.method, gold_norm, None, None)
    if not gold_norm:
        prep.decided = ("error", None, "gold answer is empty after normalisation")
        return prep
    if extraction.answer is None:
        prep.decided = ("no_answer", False, f"no answer found: {extraction.note}")
        return prep
    pred_norm = normalize(extraction.answer)
    prep.pred = pred_norm
    if not pred_norm:
        prep.decided = ("no_answer", False, "extracted answer is empty after normalisation")
        return prep
    gold_choice = as_choice(gold_norm, strict=True)
    if gold_choice is not None:
        pred_choice = as_choice(pred_norm, strict=False)
        if pred_choice == gold_choice:
            prep.decided = ("equivalent", True, f"same choice letter {gold_choice}")
        else:
            got = pred_choice if pred_choice is not None else "no choice letter"
            prep.decided = ("not_equivalent", False, f"gold is choice {gold_choice}, got {got}")
        return prep
    gold_text = as_text_answer(gold_norm)
    if gold_text is not None:
        pred_text = as_text_answer(pred_norm)
        if pred_text is None:
            pred_text = drop_article(
                " ".join(unwrap_command(pred_norm, ("text",)).split()).lower()
            )
        same = pred_text == gold_text
        prep.decided = (
            ("equivalent", True, "same words")
            if same
            else ("not_equivalent", False, f"gold is the words {gold_text!r}, got {pred_text!r}")
        )
        return prep
    if pred_norm == gold_norm:
        prep.decided = ("equivalent", True, "identical after normalisation")
        return prep
    prep.gold_full = _with_label(gold, gold_norm)
    prep.pred_full = _with_label(extraction.answer, pred_norm)
    return prep


def _with_label(raw: str, normalized: str) -> str | None:
    full = normalize(raw, keep_labels=True)
    return full if full != normalized else None


def _finish(prep: _Prepared, outcome: _Outcome, compare_ms: float) -> Grade:
    verdict, equivalent, reason = outcome
    return Grade(
        equivalent=equivalent,
        verdict=verdict,
        reason=reason,
        extracted=prep.extracted,
        extraction_method=prep.method,
        normalized_gold=prep.gold,
        normalized_pred=prep.pred,
        elapsed_ms=round(prep.prep_ms + compare_ms, 3),
    )


def _check_timeout(timeout_s: float) -> float:
    if not timeout_s > 0:
        raise MathGraderInputError(
            f"timeout_s must be a positive number of seconds, got {timeout_s}"
        )
    return float(timeout_s)


class MathGrader:
    """A warm pool of grader worker processes; use as a context manager or call ``close()``."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise MathGraderInputError(f"workers must be at least 1, got {workers}")
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> MathGrader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes."""
        with self._lock:
            self._kill_pool()

    def grade(self, gold: str, prediction: str, timeout_s: float = 5.0) -> Grade:
        """Grade one pair; the sympy step is bounded by ``timeout_s`` seconds."""
        return self.grade_many([(gold, prediction)], timeout_s=timeout_s)[0]

    def grade_many(self, rows: Iterable[tuple[str, str]], timeout_s: float = 5.0) -> list[Grade]:
        """Grade pairs in order, up to ``workers`` sympy comparisons at a time."""
        timeout_s = _check_timeout(timeout_s)
        prepared = [_prepare(gold, prediction) for gold, prediction in rows]
        pending = [i for i, prep in enumerate(prepared) if prep.decided is None]
        outcomes: dict[int, tuple[_Outcome, float]] = {}
        with self._lock:
            for start in range(0, len(pending), self._workers):
                wave = pending[start : start + self._workers]
                pairs = [
                    (prepared[i].gold, prepared[i].pred or "", prepared[i].gold_full,
                     prepared[i].pred_full)
                    for i in wave
                ]
                began = time.perf_counter()
                results = self._run_wave(pairs, timeout_s)
                wave_ms = (time.perf_counter() - began) * 1000.0
                for i, outcome in zip(wave, results, strict=True):
                    outcomes[i] = (outcome, wave_ms)
        return [
            _finish(prep, prep.decided, 0.0)
            if prep.decided is not None
            else _finish(prep, *outcomes[i])
            for i, prep in enumerate(prepared)
        ]

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the parent may hold threads (event loops, HTTP clients) and a
            # forked child of a threaded process can deadlock.
            executor = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=warm_up,
            )
            self._executor = executor
            # Start every worker now, so the first timed comparison does not pay for imports.
            pings = [executor.submit(os.getpid) for _ in range(self._workers)]
            done, _ = wait(pings, timeout=_WARM_UP_TIMEOUT_S)
            if len(done) != len(pings) or any(f.exception() is not None for f in done):
                self._kill_pool()
                raise BrokenProcessPool("math grader workers did not start")
        return self._executor

    def _kill_pool(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # ProcessPoolExecutor cannot cancel a running task; killing its processes (a private
        # but long-stable CPython attribute) is the only way to reclaim a stuck worker.
        processes = list((executor._processes or {}).values())
        for process in processes:
            if process.is_alive():
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)

    def _run_wave(self, pairs: list[_Pair], timeout_s: float) -> list[_Outcome]:
        try:
            executor = self._pool()
        except (BrokenProcessPool, OSError) as exc:
            return [("error", None, f"grader worker could not start: {exc}")] * len(pairs)
        futures: list[Future[tuple[bool, str]]] = [
            executor.submit(compare, *pair) for pair in pairs
        ]
        done, not_done = wait(futures, timeout=timeout_s)
        outcomes: list[_Outcome] = []
        restart = bool(not_done)
        for future in futures:
            if future not in done:
                outcomes.append(
                    ("timeout", None, f"sympy comparison exceeded {timeout_s:g} s; worker killed")
                )
                continue
            try:
                equivalent, reason = future.result()
            except BrokenProcessPool:
                restart = True
                outcomes.append(("error", None, "grader worker died (out of memory or crash)"))
            except Exception as exc:  # the worker raised: record it, the row still gets a verdict
                outcomes.append(("error", None, f"comparison failed: {type(exc).__name__}: {exc}"))
            else:
                outcomes.append(
                    ("equivalent", True, reason)
                    if equivalent
                    else ("not_equivalent", False, reason)
                )
        if restart:
            self._kill_pool()
        return outcomes


_default_grader: MathGrader | None = None
_default_lock = threading.Lock()


def _shared_grader() -> MathGrader:
    global _default_grader
    with _default_lock:
        if _default_grader is None:
            _default_grader = MathGrader(workers=1)
            atexit.register(_default_grader.close)
        return _default_grader


def grade(gold: str, prediction: str, timeout_s: float = 5.0) -> Grade:
    """Grade one (gold, prediction) pair with the shared, warm one-worker pool."""
    return _shared_grader().grade(gold, prediction, timeout_s=timeout_s)


def grade_many(
    rows: Iterable[tuple[str, str]], timeout_s: float = 5.0, workers: int = 1
) -> list[Grade]:
    """Grade many pairs with one pool (the shared one when ``workers`` is 1)."""
    if workers == 1:
        return _shared_grader().grade_many(rows, timeout_s=timeout_s)
    with MathGrader(workers=workers) as grader:
        return grader.grade_many(rows, timeout_s=timeout_s)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for where, row in read_objects(path, MathGraderInputError, "'gold' and 'prediction'"):
        for key in ("gold", "prediction"):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise MathGraderInputError(
                    f"{where}: field {key!r} must be a string (or number), got "
                    f"{'nothing' if value is None else type(value).__name__}"
                )
            row[key] = str(value)
        rows.append(row)
    return rows


def grade_file(path: Path, timeout_s: float = 5.0, workers: int = 1) -> list[dict[str, Any]]:
    """Grade a JSONL file of ``{gold, prediction}`` rows (for ``localroute eval grade-math``).

    Every row is validated before any grading, so a malformed row fails fast with
    ``MathGraderInputError`` naming ``file:line``. Returns the input rows with ``equivalent``,
    ``verdict``, ``reason`` and ``extracted`` added.
    """
    rows = _read_rows(path)
    grades = grade_many(
        [(row["gold"], row["prediction"]) for row in rows], timeout_s=timeout_s, workers=workers
    )
    return [
        {
            **row,
            "equivalent": result.equivalent,
            "verdict": result.verdict,
            "reason": result.reason,
            "extracted": result.extracted,
        }
        for row, result in zip(rows, grades, strict=True)
    ]
